"""The openai backend: any OpenAI-compatible endpoint (vLLM's server, a hosted API) through the official
client. The client retries 429, 5xx, timeouts and connection errors with backoff (`max_retries`); this
module adds the empty-output retries and turns a request that still fails into a failed row."""
from __future__ import annotations

import asyncio
import os
import time

import httpx
import openai

from eval_pipeline.generation.requests import GenRequest
from eval_pipeline.generation.rows import Outcome
from eval_pipeline.model_registry import Model, OpenAIOptions

DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_EMPTY_RETRIES = 0
_SAMPLING_EXTRA = ("top_k", "min_p", "repetition_penalty")
_RETRYABLE = (openai.APIConnectionError, openai.RateLimitError)  # timeouts are connection errors


class OpenAIBackend:
    def __init__(self, model: Model):
        self.model = model
        self.options: OpenAIOptions = model.options

    def _client(self, run_generation: dict) -> openai.AsyncOpenAI:
        o = self.options
        key = os.environ.get(o.api_key_env, "") if o.api_key_env else ""
        read = float(run_generation.get("timeout_seconds") or o.read_timeout)
        return openai.AsyncOpenAI(
            base_url=o.base_url, api_key=key or "EMPTY", default_headers=o.headers,
            max_retries=run_generation.get("max_retries", DEFAULT_MAX_RETRIES),
            timeout=httpx.Timeout(read, connect=o.connect_timeout))

    def generate(self, requests: list[GenRequest], run_generation: dict, settings: dict) -> list[Outcome]:
        return asyncio.run(self._generate_all(requests, run_generation, settings))

    async def _generate_all(self, requests, run_generation, settings) -> list[Outcome]:
        limit = asyncio.Semaphore(int(settings.get("generation_concurrency") or 1))
        async with self._client(run_generation) as client:
            async def one(r: GenRequest) -> Outcome:
                async with limit:
                    return await self._one(client, r, run_generation)
            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _one(self, client, r: GenRequest, run_generation: dict) -> Outcome:
        empty_budget = run_generation.get("max_empty_retries", DEFAULT_MAX_EMPTY_RETRIES)
        attempts = 0
        started = time.perf_counter()
        while True:
            if r.kind == "loglikelihood" and self.options.api != "completions":
                return Outcome(error="loglikelihood requests need api=completions (prompt logprobs)",
                               finish_reason="error", attempts=0)
            try:
                if r.kind == "loglikelihood":
                    outcome, retries = await self._loglikelihood(client, r)
                else:
                    outcome, retries = await self._complete(client, r, run_generation)
            except openai.APIError as e:
                # The client has used its retries already when the error was a retryable one.
                status = getattr(e, "status_code", None)
                retried = isinstance(e, _RETRYABLE) or (status is not None and status >= 500)
                return Outcome(error=f"{type(e).__name__}{f' {status}' if status else ''}: {e.message}",
                               finish_reason="error",
                               attempts=attempts + 1 + (run_generation.get("max_retries", DEFAULT_MAX_RETRIES)
                                                        if retried else 0),
                               latency_ms=(time.perf_counter() - started) * 1000)
            except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
                return Outcome(error=f"malformed response from the endpoint: {type(e).__name__}: {e}",
                               finish_reason="error", attempts=attempts + 1,
                               latency_ms=(time.perf_counter() - started) * 1000)
            attempts += 1 + retries
            outcome.attempts = attempts
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            if r.kind == "loglikelihood" or outcome.output_text or empty_budget <= 0:
                return outcome
            empty_budget -= 1

    async def _complete(self, client, r: GenRequest, run_generation: dict) -> tuple[Outcome, int]:
        p = r.params
        common = dict(model=self.options.served_name or self.model.name, max_tokens=p["max_gen_toks"],
                      temperature=p["temperature"], stop=p["until"][:4] or None)
        for k in ("top_p", "presence_penalty", "frequency_penalty", "seed"):
            if k in p:
                common[k] = p[k]
        extra = {k: p[k] for k in _SAMPLING_EXTRA if k in p} | (run_generation.get("extra_body") or {})
        if self.options.api == "chat" and p.get("json_schema"):  # a judge's verdict, as structured output
            common["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "verdict", "schema": p["json_schema"], "strict": True}}
        if self.options.api == "chat":
            messages = ([{"role": "system", "content": run_generation["instructions"]}]
                        if run_generation.get("instructions") else []) + [{"role": "user", "content": r.context}]
            if run_generation.get("chat_template_kwargs"):
                extra["chat_template_kwargs"] = run_generation["chat_template_kwargs"]
            raw = await client.chat.completions.with_raw_response.create(messages=messages, extra_body=extra or None,
                                                                         **common)
            resp = raw.parse()
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            raw = await client.completions.with_raw_response.create(prompt=r.context, extra_body=extra or None,
                                                                    **common)
            resp = raw.parse()
            choice = resp.choices[0]
            text = choice.text or ""
        for s in p["until"]:  # endpoints accept only a few stop strings; cut at the rest here
            text = text.split(s)[0]
        usage = resp.usage
        return Outcome(output_text=text, finish_reason=choice.finish_reason,
                       input_tokens=usage.prompt_tokens if usage else 0,
                       output_tokens=usage.completion_tokens if usage else 0), raw.retries_taken

    async def _loglikelihood(self, client, r: GenRequest) -> tuple[Outcome, int]:
        context, continuation = r.context, r.continuation or ""
        raw = await client.completions.with_raw_response.create(
            model=self.options.served_name or self.model.name, prompt=context + continuation, echo=True,
            max_tokens=1, logprobs=1, temperature=0)
        resp = raw.parse()
        lp = resp.choices[0].logprobs
        # Continuation tokens are those that start at or after the end of the context. Offsets count
        # the text of every echoed token, a leading BOS too, so they are taken relative to the first
        # token from which the tokens spell the prompt.
        n_prompt = resp.usage.prompt_tokens if resp.usage else len(lp.tokens) - 1
        shift, tail = 0, ""
        for j in range(n_prompt - 1, -1, -1):
            tail = lp.tokens[j] + tail
            if tail == context + continuation:
                shift = lp.text_offset[j]
                break
        total, greedy = 0.0, True
        for j in range(n_prompt):
            if lp.text_offset[j] < shift + len(context) or lp.token_logprobs[j] is None:
                continue
            total += lp.token_logprobs[j]
            top = lp.top_logprobs[j] or {}
            if top and max(top, key=top.get) != lp.tokens[j]:
                greedy = False
        return Outcome(finish_reason="logprobs", input_tokens=n_prompt, logprob=total, is_greedy=greedy), \
            raw.retries_taken
