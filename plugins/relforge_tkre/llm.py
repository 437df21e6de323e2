"""LLM access for knowledge generation: three backends selected by configuration.

The core has no "LLM" component kind, so the clients live here, each with a
pydantic settings model; a stage's ``llm`` setting picks one by ``backend``:

* ``openai``: any OpenAI-compatible chat-completions endpoint (vLLM, Ollama,
  llama.cpp, OpenAI) through the official ``openai`` SDK: its time-outs and
  retries with exponential back-off on connection errors, time-outs, 408,
  409, 429 and 5xx, plus a concurrency limit here. The key comes from
  ``api_key`` or the environment variable ``api_key_env``; it is a
  ``SecretStr`` (printed and saved as ``**********``) and is only ever put in
  the ``Authorization`` header, never in a message.
* ``transformers``: a local causal LM (a folder or hub id), greedy or sampled.
* ``cache``: replay only from a JSON-lines cache; a request that is not in it
  is an error. Any backend can also be wrapped by the cache
  (:class:`CachedLLM`) so that generation is reproducible and resumable:
  every answer is appended (and flushed) the moment it arrives, and a rerun
  sends only the requests whose answers are missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, SecretStr

from relforge import progress
from relforge.components import Settings
from relforge.validation import UserFacingError


class LLMError(UserFacingError, RuntimeError):
    """A request that could not be answered (after retries, where retried)."""


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completions request. ``sample`` tells apart deliberately
    repeated identical requests (several draws of the same prompt), so each
    gets its own cache entry."""

    messages: tuple[tuple[str, str], ...]
    temperature: float = 0.1
    top_p: float = 0.95
    max_tokens: int = 1024
    sample: int = 0

    @classmethod
    def user(cls, prompt: str, **kw: Any) -> ChatRequest:
        return cls(messages=(("user", prompt),), **kw)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def key(self, model: str) -> str:
        payload = {"model": model, "messages": self.message_dicts(), "temperature": self.temperature,
                   "top_p": self.top_p, "max_tokens": self.max_tokens, "sample": self.sample}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


ResultCallback = Callable[[int, str], None]


class LLMClient:
    """``complete_many`` answers requests in order; ``on_result(i, text)`` is
    called as each answer arrives (from worker threads for concurrent
    clients), so a cache can persist it before the next one is asked."""

    model_name: str = ""

    def complete(self, request: ChatRequest) -> str:
        raise NotImplementedError

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_result: ResultCallback | None = None) -> list[str]:
        out = []
        for i, req in enumerate(requests):
            text = self.complete(req)
            if on_result is not None:
                on_result(i, text)
            out.append(text)
        return out


# --- OpenAI-compatible HTTP ------------------------------------------------

class OpenAIChatSettings(Settings):
    backend: Literal["openai"] = "openai"
    #: e.g. http://127.0.0.1:8000/v1 (the path before /chat/completions)
    base_url: str | None = None
    #: used when base_url is not set
    base_url_env: str = "OPENAI_BASE_URL"
    model: str
    api_key: SecretStr | None = None
    #: environment variable read when api_key is not set (may be unset: local servers need no key)
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = Field(120.0, gt=0)
    #: retries of a request after a connection error, a time-out, 408, 409, 429 or 5xx (the openai SDK's
    #: exponential back-off from 0.5 s to 8 s with jitter, or the server's Retry-After)
    max_retries: int = Field(4, ge=0)
    concurrency: int = Field(4, gt=0)


#: the key sent to a server that needs none (the SDK insists on one; vLLM's documented placeholder)
NO_KEY = "EMPTY"


class OpenAIChatClient(LLMClient):
    """Chat completions through the official ``openai`` SDK (any
    ``base_url``): its time-outs, retries with back-off and typed errors,
    turned into :class:`LLMError` lines that name the endpoint."""

    def __init__(self, settings: OpenAIChatSettings) -> None:
        import openai

        self.settings = settings
        base = settings.base_url or os.environ.get(settings.base_url_env)
        if not base:
            raise LLMError(f"the openai backend needs base_url (or the environment variable "
                           f"{settings.base_url_env})")
        self.url = base.rstrip("/") + "/chat/completions"
        key = settings.api_key.get_secret_value() if settings.api_key is not None else \
            os.environ.get(settings.api_key_env)
        self.model_name = settings.model
        #: requests sent over the wire, retries included (for reports)
        self.sent = 0
        self._lock = threading.Lock()

        def count(_request) -> None:
            with self._lock:
                self.sent += 1

        self._client = openai.OpenAI(
            base_url=base.rstrip("/"), api_key=key or NO_KEY, timeout=settings.timeout_s,
            max_retries=settings.max_retries,
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [count]}))
        self._errors = openai

    def complete(self, request: ChatRequest) -> str:
        s, oa = self.settings, self._errors
        attempts = f"{s.max_retries + 1} attempt(s)"
        try:
            resp = self._client.chat.completions.create(
                model=s.model, messages=request.message_dicts(), temperature=request.temperature,
                top_p=request.top_p, max_tokens=request.max_tokens)
        except oa.APITimeoutError:
            raise LLMError(f"{self.url}: no answer after {attempts}; last error: timed out after "
                           f"{s.timeout_s}s") from None
        except oa.APIConnectionError as exc:
            raise LLMError(f"{self.url}: no answer after {attempts}; last error: connection failed: "
                           f"{exc.__cause__ or exc}") from None
        except oa.APIStatusError as exc:
            detail = (exc.response.text or "")[:200] if exc.response is not None else ""
            retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            where = f"no answer after {attempts}; last error: " if retried else ""
            raise LLMError(f"{self.url}: {where}HTTP {exc.status_code}: {detail!r}") from None
        except (oa.APIResponseValidationError, ValueError) as exc:
            raise LLMError(f"malformed response from {self.url}: {exc}") from None
        return self._content(resp)

    def _content(self, resp: Any) -> str:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise LLMError(f"malformed response from {self.url}: {str(resp)[:200]!r} has no choices")
        content = getattr(getattr(choices[0], "message", None), "content", None)
        if not isinstance(content, str):
            raise LLMError(f"malformed response from {self.url}: message content is {type(content).__name__}")
        return content

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_result: ResultCallback | None = None) -> list[str]:
        results: list[str | None] = [None] * len(requests)

        def one(i: int) -> None:
            text = self.complete(requests[i])
            results[i] = text
            if on_result is not None:
                on_result(i, text)

        pool = ThreadPoolExecutor(max_workers=self.settings.concurrency)
        try:
            futures = [pool.submit(one, i) for i in range(len(requests))]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in done if f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
        finally:
            # on an error or Ctrl-C: requests not yet sent are dropped; those in
            # flight finish (and reach on_result, i.e. the cache) first
            pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]


# --- local transformers causal LM -----------------------------------------

class TransformersLMSettings(Settings):
    backend: Literal["transformers"] = "transformers"
    #: a local folder or a hub id
    model: str
    device: str = "cpu"
    #: "auto", "float32", "float16", "bfloat16"
    dtype: str = "auto"
    #: prompts generated together (left-padded); requests are batched only with others of the same
    #: temperature, top_p, max_tokens and sample index
    batch_size: int = Field(8, gt=0)


class TransformersClient(LLMClient):
    """A local causal LM. ``complete_many`` generates ``batch_size`` prompts
    at a time, left-padded, grouped by their generation parameters; greedy
    answers equal one-at-a-time ones (tested), sampled ones are seeded once
    per batch with the requests' sample index."""

    def __init__(self, settings: TransformersLMSettings) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        local = Path(settings.model).exists()
        self.tokenizer = AutoTokenizer.from_pretrained(settings.model, local_files_only=local)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kw: dict[str, Any] = {}
        if settings.dtype != "auto":
            kw["dtype"] = getattr(torch, settings.dtype)
        self.model = AutoModelForCausalLM.from_pretrained(settings.model, local_files_only=local, **kw)
        self.model.to(settings.device).eval()
        self.model_name = settings.model

    def _prompt(self, request: ChatRequest) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(request.message_dicts(), tokenize=False,
                                                      add_generation_prompt=True)
        return "\n\n".join(c for _, c in request.messages) + "\n"

    def complete(self, request: ChatRequest) -> str:
        return self.complete_many([request])[0]

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_result: ResultCallback | None = None) -> list[str]:
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.temperature, r.top_p, r.max_tokens, r.sample), []).append(i)
        results: list[str | None] = [None] * len(requests)
        for idx in groups.values():
            for a in range(0, len(idx), self.settings.batch_size):
                chunk = idx[a:a + self.settings.batch_size]
                for i, text in zip(chunk, self._generate([requests[i] for i in chunk])):
                    results[i] = text
                    if on_result is not None:
                        on_result(i, text)
        return results  # type: ignore[return-value]

    def _generate(self, batch: Sequence[ChatRequest]) -> list[str]:
        import torch

        first = batch[0]
        enc = self.tokenizer([self._prompt(r) for r in batch], return_tensors="pt", padding=True,
                             add_special_tokens=False)
        enc = {k: v.to(self.settings.device) for k, v in enc.items()}
        sample = first.temperature > 0
        gen_kw: dict[str, Any] = {"max_new_tokens": first.max_tokens, "do_sample": sample}
        if sample:
            gen_kw.update(temperature=first.temperature, top_p=first.top_p)
        with torch.no_grad():
            if sample:
                torch.manual_seed(first.sample)
            out = self.model.generate(**enc, pad_token_id=self.tokenizer.pad_token_id, **gen_kw)
        new = out[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


# --- JSON-lines cache --------------------------------------------------------

class CacheSettings(Settings):
    """Replay only: every request must already be in the cache file."""

    backend: Literal["cache"] = "cache"
    path: str
    #: the model name the cache entries were written for (part of the key)
    model: str


LLMSettings = Annotated[Union[OpenAIChatSettings, TransformersLMSettings, CacheSettings],
                        Field(discriminator="backend")]


class JsonlCache:
    """Append-only request -> answer store. A line cut short by an
    interruption is skipped on load (and reported in ``skipped_lines``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, str] = {}
        self.skipped_lines = 0
        self._lock = threading.Lock()
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        self.entries[rec["key"]] = rec["response"]
                    except (ValueError, KeyError, TypeError):
                        self.skipped_lines += 1

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, request: ChatRequest, model: str, response: str) -> None:
        rec = {"key": key, "model": model, "messages": request.message_dicts(),
               "params": {"temperature": request.temperature, "top_p": request.top_p,
                          "max_tokens": request.max_tokens, "sample": request.sample},
               "response": response}
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                # a previous run cut off mid-line: start on a fresh line
                if fh.tell() > 0 and not self._ends_with_newline():
                    fh.write("\n")
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            self.entries[key] = response

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    sent: list[int] = field(default_factory=list)


class CachedLLM(LLMClient):
    """``inner`` behind a :class:`JsonlCache`; ``inner=None`` replays only."""

    def __init__(self, inner: LLMClient | None, cache: JsonlCache, model_name: str | None = None) -> None:
        self.inner, self.cache = inner, cache
        self.model_name = model_name or (inner.model_name if inner is not None else "")
        self.stats = CacheStats()

    def complete(self, request: ChatRequest) -> str:
        return self.complete_many([request])[0]

    def complete_many(self, requests: Sequence[ChatRequest],
                      on_result: ResultCallback | None = None) -> list[str]:
        keys = [r.key(self.model_name) for r in requests]
        results: list[str | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, r in enumerate(results) if r is None]
        self.stats.hits += len(requests) - len(missing)
        self.stats.misses += len(missing)
        for i, r in enumerate(results):
            if r is not None and on_result is not None:
                on_result(i, r)
        shown = progress.current()
        if shown is not None:  # the stage's progress step: say what the cache answered
            shown.update(status=f"{len(requests) - len(missing)} from the cache, {len(missing)} to "
                                f"{'ask ' + self.model_name if self.inner is not None else 'find'}")
        if missing:
            if self.inner is None:
                raise LLMError(f"{len(missing)} of {len(requests)} request(s) are not in the cache "
                               f"{self.cache.path} and the cache backend does not call a model "
                               f"(configure an openai or transformers backend with a cache_path)")
            sub = [requests[i] for i in missing]

            def store(j: int, text: str) -> None:
                i = missing[j]
                self.cache.put(keys[i], requests[i], self.model_name, text)
                results[i] = text
                if on_result is not None:
                    on_result(i, text)

            self.inner.complete_many(sub, on_result=store)
        return [r for r in results]  # type: ignore[misc]


def build_llm(settings: OpenAIChatSettings | TransformersLMSettings | CacheSettings | None,
              cache_path: str | Path | None) -> LLMClient | None:
    """The configured client, wrapped by the cache when ``cache_path`` is set
    (the ``cache`` backend always reads its own ``path``)."""
    if settings is None:
        return None
    if isinstance(settings, CacheSettings):
        return CachedLLM(None, JsonlCache(settings.path), model_name=settings.model)
    inner: LLMClient = OpenAIChatClient(settings) if isinstance(settings, OpenAIChatSettings) else \
        TransformersClient(settings)
    if cache_path is None:
        return inner
    return CachedLLM(inner, JsonlCache(cache_path))
