"""The openai backend: any OpenAI-compatible endpoint (vLLM's server, a hosted API) through the official
client. The client retries 429, 5xx, timeouts and connection errors with backoff (`max_retries`); this
module adds the empty-output retries and turns a request that still fails into a failed row.

A process keeps one event loop, in a thread of its own, and one client per endpoint configuration on it:
partitions and chunks then reuse the client's kept-alive connections. A new client and loop per chunk
cost 0.66 s of every 20-request partition against an endpoint that answers at once (bench/scale)."""
from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

import httpx
import openai

from eval_pipeline.generation.requests import ROLLING, GenRequest
from eval_pipeline.generation.rows import Outcome
from eval_pipeline.generation.tokens import Tokenization, Unservable
from eval_pipeline.models.registry import Model, OpenAIOptions

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

DEFAULT_MAX_RETRIES = 2
DEFAULT_MAX_EMPTY_RETRIES = 0
_SAMPLING_EXTRA = ("top_k", "min_p", "repetition_penalty")
_RETRYABLE = (openai.APIConnectionError, openai.RateLimitError)  # timeouts are connection errors


class OpenAIBackend:
    """A Backend over an OpenAI-compatible endpoint (lm-eval's `local-completions` / `local-chat-completions`):
    generate_until through completions or chat, loglikelihood requests through completions with echo."""

    def __init__(self, model: Model):
        self.model = model
        self.options = cast(OpenAIOptions, model.options)  # backends.backend_for gives this class the openai models
        self._tokens: Tokenization | None = None

    def _client(self, run_generation: dict[str, Any]) -> openai.AsyncOpenAI:
        o = self.options
        key = os.environ.get(o.api_key_env, "") if o.api_key_env else ""
        read = float(run_generation.get("timeout_seconds") or o.read_timeout)
        retries = run_generation.get("max_retries", DEFAULT_MAX_RETRIES)
        return _shared_client(o.base_url, key or "EMPTY", tuple(sorted((o.headers or {}).items())), retries, read,
                              o.connect_timeout)

    def generate(self, requests: list[GenRequest], run_generation: dict[str, Any],
                 settings: dict[str, Any]) -> list[Outcome]:
        """One Outcome per request, in order, sent concurrently (settings `generation_concurrency`, default 1);
        `run_generation` gives timeout_seconds, max_retries, max_empty_retries, instructions, extra_body. A
        request that fails is an Outcome with `error` (see Backend.generate)."""
        return cast("list[Outcome]", _run(self._generate_all(requests, run_generation, settings)))

    async def _generate_all(self, requests: list[GenRequest], run_generation: dict[str, Any],
                            settings: dict[str, Any]) -> list[Outcome]:
        limit = asyncio.Semaphore(int(settings.get("generation_concurrency") or 1))
        client = self._client(run_generation)

        async def one(r: GenRequest) -> Outcome:
            async with limit:
                return await self._one(client, r, run_generation)
        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _one(self, client: openai.AsyncOpenAI, r: GenRequest, run_generation: dict[str, Any]) -> Outcome:
        empty_budget = run_generation.get("max_empty_retries", DEFAULT_MAX_EMPTY_RETRIES)
        attempts = 0
        started = time.perf_counter()
        while True:
            if r.kind != "generate_until" and self.options.api != "completions":
                return Outcome(error=f"{r.kind} requests need api=completions (prompt logprobs)",
                               finish_reason="error", attempts=0)
            try:
                if r.kind != "generate_until":
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
            except Unservable as e:
                return Outcome(error=str(e), finish_reason="error", attempts=attempts)
            except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
                return Outcome(error=f"malformed response from the endpoint: {type(e).__name__}: {e}",
                               finish_reason="error", attempts=attempts + 1,
                               latency_ms=(time.perf_counter() - started) * 1000)
            attempts += 1 + retries
            outcome.attempts = attempts
            outcome.latency_ms = (time.perf_counter() - started) * 1000
            if r.kind != "generate_until" or outcome.output_text or empty_budget <= 0:
                return outcome
            empty_budget -= 1

    async def _complete(self, client: openai.AsyncOpenAI, r: GenRequest,
                        run_generation: dict[str, Any]) -> tuple[Outcome, int]:
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
            raw = await client.chat.completions.with_raw_response.create(
                messages=cast("list[ChatCompletionMessageParam]", messages), extra_body=extra or None, **common)
            resp = raw.parse()
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            prompt: str | list[int] = r.context
            if self.options.tokenizer:  # lm-eval's tokenized requests: the prompt left-truncated to the window
                tokens = await self._tokenization(client)
                # lm-eval's TemplateAPI keeps max_length - 1 as its window
                prompt = tokens.truncate_for_generation(tokens.encode(r.context), p["max_gen_toks"],
                                                        window=tokens.max_length - 1)
            raw = await client.completions.with_raw_response.create(prompt=prompt, extra_body=extra or None,
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

    @property
    def engine_info(self) -> dict[str, Any]:
        """The endpoint, and the tokenizer and window loglikelihood requests were built with (once known)."""
        o = self.options
        info: dict[str, Any] = {"backend": "openai", "base_url": o.base_url, "api": o.api,
                                "served_name": o.served_name or self.model.name, "add_bos_token": o.add_bos_token}
        if self._tokens is not None:
            info |= {"tokenizer": self._tokens.tokenizer.name_or_path, "max_model_len": self._tokens.max_length}
        return info

    async def _tokenization(self, client: openai.AsyncOpenAI) -> Tokenization:
        """The model's tokenizer and window, found once per backend: the options, else what a vLLM server
        says of the model in /v1/models (`root`, `max_model_len`), else served_name and lm-eval's 2048."""
        if self._tokens is None:
            o = self.options
            name, window = o.tokenizer, o.max_length
            if name is None or window is None:
                listed = await _listed_model(client, o.served_name or self.model.name)
                name = name or listed.get("root") or o.served_name or self.model.name
                window = window or listed.get("max_model_len") or LM_EVAL_API_MAX_LENGTH
            try:
                # A name guessed from the endpoint is only looked for on this machine; a named one may download.
                tokenizer = _load_tokenizer(name, local_only=o.tokenizer is None)
            except (OSError, ValueError) as e:
                raise Unservable(f"loglikelihood requests are tokenised as lm-eval does, which needs the model's "
                                 f"tokenizer: {name!r} could not be loaded ({type(e).__name__}); set the model "
                                 "option tokenizer") from e
            self._tokens = Tokenization(tokenizer, int(window), o.add_bos_token)
        return self._tokens

    async def _loglikelihood(self, client: openai.AsyncOpenAI, r: GenRequest) -> tuple[Outcome, int]:
        """lm-eval's loglikelihood (and loglikelihood_rolling) through an endpoint: the request tokenised
        here (tokens.py), sent as token ids with echo, and the prompt logprobs past the context summed
        (lm_eval/models/openai_completions.py `parse_logprobs`)."""
        tokens = await self._tokenization(client)
        window = tokens.max_length - 1  # one token is generated
        if r.kind == ROLLING:
            spans = tokens.rolling_spans(r.context, max_seq_len=tokens.max_length - 2, window=window)
        else:
            spans = [tokens.loglikelihood_span(r.context, r.continuation or "", window)]
        total, greedy, retries, n_tokens = 0.0, True, 0, 0
        for span in spans:
            raw = await client.completions.with_raw_response.create(
                model=self.options.served_name or self.model.name, prompt=span.tokens, echo=True,
                max_tokens=1, logprobs=1, temperature=0)
            retries += raw.retries_taken
            lp: Any = raw.parse().choices[0].logprobs  # None (no logprobs echoed) fails as malformed, in _one
            scored = lp.token_logprobs[span.ctxlen:len(span.tokens)]
            if len(scored) != len(span.tokens) - span.ctxlen or any(x is None for x in scored):
                raise ValueError(f"the endpoint echoed {len(lp.token_logprobs)} logprobs for {len(span.tokens)} "
                                 "prompt tokens")
            total += sum(scored)
            tops = lp.top_logprobs[span.ctxlen:len(span.tokens)]
            greedy = greedy and all(top and x >= max(top.values()) for x, top in zip(scored, tops))
            n_tokens += len(span.tokens)
        return Outcome(finish_reason="logprobs", input_tokens=n_tokens, logprob=total, is_greedy=greedy), retries


LM_EVAL_API_MAX_LENGTH = 2048  # lm-eval's TemplateAPI default max_length

MAX_CLIENTS = 16  # endpoint configurations a process keeps clients for; the least recently used is closed

_loop_lock = threading.Lock()
# (pid, thread, loop): a forked child, or a process whose loop thread ended, starts a new one
_loop: tuple[int, threading.Thread, asyncio.AbstractEventLoop] | None = None
_clients: OrderedDict[tuple[Any, ...], openai.AsyncOpenAI] = OrderedDict()


def _process_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for endpoint clients, running in a daemon thread (started on first use)."""
    global _loop
    with _loop_lock:
        if _loop is None or _loop[0] != os.getpid() or not _loop[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="openai-endpoints", daemon=True)
            thread.start()
            _loop = (os.getpid(), thread, loop)
            _clients.clear()  # another loop's clients (a fork's copies, a dead thread's) cannot be used here
        return _loop[2]


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` on the process loop and wait for its result; an interrupt of the caller (a Dagster step
    being terminated) cancels it."""
    future = asyncio.run_coroutine_threadsafe(coro, _process_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def _shared_client(base_url: str, api_key: str, headers: tuple[tuple[str, str], ...], max_retries: int,
                   read_timeout: float, connect_timeout: float) -> openai.AsyncOpenAI:
    """The process's client for one endpoint configuration, made on first use (called on the process loop)."""
    ident = (base_url, api_key, headers, max_retries, read_timeout, connect_timeout)
    client = _clients.get(ident)
    if client is None:
        client = _clients[ident] = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, default_headers=dict(headers) or None, max_retries=max_retries,
            # the client's stubs name httpx2's Timeout; it converts an httpx.Timeout (openai/_httpx2.py)
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout))  # type: ignore[arg-type]
        while len(_clients) > MAX_CLIENTS:  # the least recently used, after 16 newer configurations
            _, old = _clients.popitem(last=False)
            asyncio.get_running_loop().create_task(old.close())
    _clients.move_to_end(ident)
    return client


async def _listed_model(client: openai.AsyncOpenAI, name: str) -> dict[str, Any]:
    """What the endpoint's /v1/models says of `name` beyond OpenAI's fields (vLLM: root, max_model_len);
    {} when it says nothing."""
    try:
        page = await client.models.list()
    except openai.APIError:
        return {}
    for m in page.data:
        if m.id == name:
            return dict(m.model_extra or {})
    return {}


@functools.lru_cache(maxsize=8)
def _load_tokenizer(name: str, local_only: bool) -> Any:
    """The Hugging Face tokenizer `name` (a Hub id or folder; `local_only`: no download), cached per name."""
    # deferred: transformers takes seconds to import; only loglikelihood requests need a tokenizer
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, local_files_only=local_only)
