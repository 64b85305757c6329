"""Requests as token ids, built exactly as lm-evaluation-harness 0.4.13 builds them, for any backend that
holds the model's tokenizer (the vllm backend; the openai backend when it has a tokenizer).

Source: lm_eval/api/model.py (`TemplateLM.loglikelihood`, `_encode_pair`), lm_eval/models/vllm_causallms.py
(`tok_encode`, `_loglikelihood_tokens`, `loglikelihood_rolling`, `generate_until`) and lm_eval/models/utils.py
(`maybe_truncate`). The rolling windows are lm-eval's own functions (`lm_eval.utils`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast


class Unservable(ValueError):
    """A request that cannot be served within the model's window; its row fails with this reason."""


@dataclass(frozen=True)
class ScoredSpan:
    """One forward pass to score: the input tokens, and how many of them are context (not summed)."""

    tokens: list[int]
    ctxlen: int


class Tokenization:
    """lm-eval's tokenisation rules over a Hugging Face tokenizer.

    `add_bos_token`: None leaves special tokens to the tokenizer (a Llama-style one adds BOS), as lm-eval's
    vllm and hf backends do; True/False forces them. A text that already starts with the BOS text (a chat
    template's) gets no special tokens (lm-eval 0.4.10+). `max_length` is the model's window in tokens.
    """

    def __init__(self, tokenizer: Any, max_length: int, add_bos_token: bool | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.add_bos_token = add_bos_token
        bos = tokenizer.bos_token_id
        self.prefix_token_id: int = bos if bos is not None else tokenizer.eos_token_id
        self.bos_text = tokenizer.decode([self.prefix_token_id])

    def _special(self, text: str, add_special_tokens: bool | None = None) -> dict[str, bool]:
        if add_special_tokens is not None:
            return {"add_special_tokens": add_special_tokens}
        if self.bos_text and text.startswith(self.bos_text):
            return {"add_special_tokens": False}
        return {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}

    def encode(self, text: str, add_special_tokens: bool | None = None) -> list[int]:
        """lm-eval's `tok_encode`: an empty string is no tokens."""
        if not text:
            return []
        return cast("list[int]", self.tokenizer(text, **self._special(text, add_special_tokens)).input_ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of many texts, one tokenizer call per kind of special-token handling."""
        out: list[list[int]] = [[] for _ in texts]
        groups: dict[tuple[tuple[str, bool], ...], list[int]] = {}
        for i, text in enumerate(texts):
            if text:
                groups.setdefault(tuple(self._special(text).items()), []).append(i)
        for special, idx in groups.items():
            for i, ids in zip(idx, self.tokenizer([texts[i] for i in idx], **dict(special)).input_ids):
                out[i] = ids
        return out

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens). An empty context is the prefix token (BOS, else EOS) with
        the continuation encoded without special tokens; otherwise the context's trailing whitespace moves
        into the continuation and the continuation is what the whole encoding adds to the context's."""
        if context == "":
            cont = self.encode(continuation, add_special_tokens=False)
            if cont and cont[0] == self.prefix_token_id:
                return cont[:1], cont[1:]
            return [self.prefix_token_id], cont
        if not context.strip():  # lm-eval would score from an empty context encoding (it fails there)
            raise Unservable("the context is only whitespace: once its whitespace moves into the continuation "
                             "nothing is left to condition on")
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_enc = self.encode(context)
        return context_enc, whole[len(context_enc):]

    def loglikelihood_span(self, context: str, continuation: str, window: int) -> ScoredSpan:
        """Context and continuation left-truncated to `window` tokens, as `_loglikelihood_tokens` does.

        Raises Unservable when the continuation alone does not leave one token of context."""
        ctx, cont = self.encode_pair(context, continuation)
        return self.span(ctx, cont, window)

    @staticmethod
    def span(ctx: list[int], cont: list[int], window: int) -> ScoredSpan:
        """(ctx + cont) left-truncated to `window` tokens, with the context length left. Raises Unservable
        when no context token is left or the continuation is empty (lm-eval's `_loglikelihood_tokens`)."""
        tokens = (ctx + cont)[-window:]
        ctxlen = len(ctx) - max(0, len(ctx) + len(cont) - window)
        if ctxlen < 1:
            raise Unservable(f"the continuation is {len(cont)} tokens: with no token of context it does not "
                             f"fit the model's window of {window} scored tokens")
        if not cont:
            raise Unservable("the continuation is empty: nothing to score")
        return ScoredSpan(tokens, ctxlen)

    def rolling_spans(self, text: str, max_seq_len: int, window: int) -> list[ScoredSpan]:
        """The disjoint windows of a loglikelihood_rolling request over `max_seq_len` tokens (lm-eval's
        `get_rolling_token_windows` with context_len 1, prefixed by the prefix token); their loglikelihoods
        sum to the document's."""
        # deferred: lm_eval.utils takes half a second to import and only rolling requests need it
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        pairs = map(make_disjoint_window, get_rolling_token_windows(
            token_list=self.encode(text), prefix_token=self.prefix_token_id, max_seq_len=max_seq_len,
            context_len=1))
        return [self.span(ctx, cont, window) for ctx, cont in pairs]

    def truncate_for_generation(self, tokens: list[int], max_gen_toks: int, window: int | None = None) -> list[int]:
        """Left-truncate a prompt to leave `max_gen_toks` of the window (default max_length; lm-eval's
        `maybe_truncate`, side left, generation tokens not shrunk). Raises Unservable when max_gen_toks fills
        the window."""
        room = (self.max_length if window is None else window) - max_gen_toks
        if room < 1:
            raise Unservable(f"max_gen_toks {max_gen_toks} leaves no room for a prompt "
                             f"(max_model_len {self.max_length})")
        return tokens if len(tokens) <= room else tokens[-room:]
