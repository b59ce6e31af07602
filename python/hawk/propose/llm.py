"""LLM clients: ask any OpenAI-compatible endpoint for a kernel, and account for it.

Search loops call ``complete`` thousands of times and must keep going when the endpoint
misbehaves, so every failure (HTTP error, timeout, empty answer, unreadable transcript)
comes back as ``LLMReply.error`` instead of an exception. Retries are ours, not the
``openai`` package's, so that ``Usage`` counts every attempt.

Runs are expensive and not reproducible on their own, hence two records:

* the response cache (a directory, one JSON file per request) makes an identical request
  free; the key covers the model, messages, sampling parameters and seed, so vary the seed
  to draw several samples for one prompt;
* the transcript (one JSON line per exchange) lets ``ReplayClient`` rerun a search without
  the endpoint.

Both survive any text an endpoint returns: lone surrogates (which JSON can carry) become
U+FFFD as the answer is read, records are written as ASCII JSON (U+2028, U+0085, NUL and
friends escaped, so a record is exactly one line) and read back split on ``\n`` only, and
an entry that does not read back as a reply is a cache miss or a replay error value.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
import textwrap
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import openai

from .admission import source_lines

# Worth another attempt: the server or the network may recover. Other errors (bad request,
# authentication, unknown model) would fail the same way again.
_RETRYABLE = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask. ``from_env`` builds it from HAWK_LLM_* variables and overrides."""

    model: str
    base_url: str
    api_key: str = field(default="", repr=False)  # local servers (vLLM, llama.cpp, Ollama) need none
    timeout_s: float = 120.0  # per attempt
    retries: int = 3  # attempts after the first
    backoff_s: float = 1.0  # first pause between attempts; doubles each time
    temperature: float = 0.7
    max_tokens: int = 4096

    def __post_init__(self):
        if not self.model or not self.base_url:
            raise ValueError("LLMConfig needs a model and a base_url")
        if self.timeout_s <= 0 or self.retries < 0 or self.backoff_s < 0 or self.max_tokens <= 0:
            raise ValueError(f"LLMConfig out of range: timeout_s={self.timeout_s}, retries={self.retries}, "
                             f"backoff_s={self.backoff_s}, max_tokens={self.max_tokens}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> LLMConfig:
        """Read the environment (``os.environ`` by default), then apply ``overrides``.

        Overrides that are None are ignored, so the CLI can pass its flags straight through
        and an absent flag falls back to the environment.
        """
        env = os.environ if env is None else env
        values = {
            "base_url": env.get("HAWK_LLM_BASE_URL") or env.get("OPENAI_BASE_URL"),
            "api_key": env.get("HAWK_LLM_API_KEY") or env.get("OPENAI_API_KEY"),
            "model": env.get("HAWK_LLM_MODEL"),
            "timeout_s": _env_number(env, "HAWK_LLM_TIMEOUT", float),
            "retries": _env_number(env, "HAWK_LLM_RETRIES", int),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values["model"]:
            raise ValueError("no LLM model configured: set HAWK_LLM_MODEL or pass model")
        if not values["base_url"]:
            raise ValueError("no LLM endpoint configured: set HAWK_LLM_BASE_URL (or OPENAI_BASE_URL) "
                             "or pass base_url")
        return cls(**{k: v for k, v in values.items() if v is not None})


def _env_number(env: Mapping[str, str], name: str, kind: type) -> float | int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


@dataclass(frozen=True)
class LLMReply:
    """One answer, or why there is none (``error``). ``text`` is empty on error."""

    text: str = ""
    finish_reason: str = ""  # "stop"; "length" when max_tokens cut the answer short
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    latency_s: float = 0.0  # time spent in ``complete``, retries and backoff included

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Usage:
    """What a client has spent. Tokens count only what the endpoint served, not cache hits."""

    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    wall_s: float = 0.0

    def add(self, reply: LLMReply) -> None:
        self.calls += 1
        self.failures += not reply.ok
        self.cache_hits += reply.cached
        if not reply.cached:
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
        self.wall_s += reply.latency_s


class LLMClient(ABC):
    """What a proposer talks to: messages in, an ``LLMReply`` out, spending in ``usage``."""

    def __init__(self):
        self.usage = Usage()

    @abstractmethod
    def complete(self, messages: list[dict], *, seed: int | None = None) -> LLMReply:
        """Answer a chat. Never raises for endpoint failures: they are ``LLMReply.error``."""


def request_key(model: str, messages: list[dict], temperature: float, max_tokens: int, seed: int | None) -> str:
    """sha256 naming a request in the cache: everything that can change the answer."""
    request = {"model": model, "messages": messages, "temperature": temperature,
               "max_tokens": max_tokens, "seed": seed}
    text = json.dumps(request, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode(errors="surrogatepass")).hexdigest()  # keys of valid text unchanged


class OpenAIClient(LLMClient):
    """A client for any OpenAI-compatible chat completions endpoint.

    ``cache_dir`` keeps successful answers (truncated ones included) on disk; ``transcript``
    appends every exchange, failures and cache hits included, as one JSON line.
    """

    def __init__(self, config: LLMConfig, *, cache_dir: str | Path | None = None,
                 transcript: str | Path | None = None):
        super().__init__()
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.transcript = Path(transcript) if transcript is not None else None
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        if self.transcript is not None:
            self.transcript.parent.mkdir(parents=True, exist_ok=True)
        self._openai = openai.OpenAI(
            base_url=config.base_url,
            api_key=config.api_key or "EMPTY",  # the package refuses no key; keyless servers ignore it
            timeout=config.timeout_s,
            max_retries=0,
        )

    def complete(self, messages: list[dict], *, seed: int | None = None) -> LLMReply:
        start = time.monotonic()
        cfg = self.config
        key = request_key(cfg.model, messages, cfg.temperature, cfg.max_tokens, seed)
        reply = self._cached(key)
        if reply is None:
            reply = self._ask(messages, seed)
            if reply.ok:
                self._store(key, reply)
        reply = replace(reply, latency_s=time.monotonic() - start)
        self.usage.add(reply)
        self._record(key, messages, seed, reply)
        return reply

    def _ask(self, messages: list[dict], seed: int | None) -> LLMReply:
        cfg = self.config
        extra = {} if seed is None else {"seed": seed}
        # a lone surrogate in a prompt (quoted from some earlier text) cannot even be encoded
        messages = [{k: _valid_text(v) if isinstance(v, str) else v for k, v in m.items()} for m in messages]
        for attempt in range(cfg.retries + 1):
            if attempt:
                self.usage.retries += 1
                time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
            deadline = time.monotonic() + cfg.timeout_s
            try:
                with self._openai.chat.completions.with_streaming_response.create(
                        model=cfg.model, messages=messages, temperature=cfg.temperature,
                        max_tokens=cfg.max_tokens, **extra) as raw:
                    body = _read_body(raw.iter_bytes(), deadline)
            except _Overdue:
                error = f"no whole answer within {cfg.timeout_s:g} s"
            except _TooLarge:
                return LLMReply(error=f"the answer is too large (over {MAX_ANSWER_BYTES} bytes)")
            except _RETRYABLE as exc:
                error = _describe(exc)
            except openai.OpenAIError as exc:
                return LLMReply(error=_describe(exc))
            else:
                try:
                    doc = json.loads(body)
                except ValueError:
                    return LLMReply(error=f"the endpoint did not return a chat completion (not JSON): {body[:200]!r}")
                return _reply_from(_tree(doc))
        attempts = cfg.retries + 1
        return LLMReply(error=f"{error} (gave up after {attempts} attempt{'s' * (attempts > 1)})")

    def _cached(self, key: str) -> LLMReply | None:
        """The stored answer, or None; an unreadable entry is a miss and gets overwritten."""
        if self.cache_dir is None:
            return None
        try:
            reply = _stored_reply(json.loads((self.cache_dir / f"{key}.json").read_bytes()))
        except (OSError, ValueError, TypeError, RecursionError):
            return None
        if not reply.ok:
            return None
        return replace(reply, cached=True)

    def _store(self, key: str, reply: LLMReply) -> None:
        """Write the entry atomically: readers see the old file or the new one, never half."""
        if self.cache_dir is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(reply), f)
            os.replace(tmp, self.cache_dir / f"{key}.json")
        except OSError as exc:  # a full disk costs the cache entry, not the answer
            Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"LLM cache entry not written: {exc}", stacklevel=3)

    def _record(self, key: str, messages: list[dict], seed: int | None, reply: LLMReply) -> None:
        if self.transcript is None:
            return
        # ASCII: no character inside a record can end its line, and none fails to encode
        line = json.dumps({"key": key, "model": self.config.model, "seed": seed, "messages": messages,
                           "reply": asdict(reply)})
        try:
            with self.transcript.open("a", encoding="ascii") as f:
                f.write(line + "\n")
        except OSError as exc:
            warnings.warn(f"LLM transcript {self.transcript} not written: {exc}", stacklevel=3)


def _describe(exc: openai.OpenAIError) -> str:
    # "Connection error." alone does not say whether the host, the port or DNS is wrong.
    cause = f" ({exc.__cause__})" if exc.__cause__ else ""
    return f"{type(exc).__name__}: {exc}{cause}"


MAX_ANSWER_BYTES = 8 * 2**20  # a chat completion is kilobytes; megabytes are a broken or hostile server


class _Overdue(Exception):
    pass


class _TooLarge(Exception):
    pass


def _read_body(chunks, deadline: float) -> bytes:
    """The whole body, or _Overdue past ``deadline`` (a server that drips bytes never trips
    the per-read timeout) or _TooLarge past ``MAX_ANSWER_BYTES``."""
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _TooLarge
        if time.monotonic() > deadline:
            raise _Overdue
        out.append(chunk)
    return b"".join(out)


def _tree(value):
    """JSON as attribute access, like the package's loose models (a missing field is an
    AttributeError that ``_reply_from`` turns into an error value)."""
    import types

    if isinstance(value, dict):
        return types.SimpleNamespace(**{str(k): _tree(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_tree(v) for v in value]
    return value


def _reply_from(response) -> LLMReply:
    """Read an answer. The package does not validate the shape, so a 200 that is not a chat
    completion (some proxies answer HTML) must become an error here, not an AttributeError."""
    try:
        choice = response.choices[0]
        text, finish, usage = choice.message.content or "", choice.finish_reason or "", response.usage
        if not isinstance(text, str) or not isinstance(finish, str):
            raise TypeError(f"content is {type(text).__name__}, finish_reason {type(finish).__name__}")
        return LLMReply(
            text=_valid_text(text),
            finish_reason=_valid_text(finish),
            prompt_tokens=_count(getattr(usage, "prompt_tokens", 0)),
            completion_tokens=_count(getattr(usage, "completion_tokens", 0)),
        )
    except (AttributeError, TypeError, IndexError) as exc:
        return LLMReply(error=f"the endpoint did not return a chat completion ({exc}): {str(response)[:200]}")


def _valid_text(text: str) -> str:
    """Lone surrogates become U+FFFD: text holding one cannot be encoded, so every later
    write, hash or request carrying it would fail."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0  # the endpoint's figure, if it is one


# The JSON type of each LLMReply field, for entries read back from disk.
_REPLY_FIELDS = {"text": str, "finish_reason": str, "prompt_tokens": int, "completion_tokens": int,
                 "cached": bool, "error": (str, type(None)), "latency_s": (int, float)}


def _stored_reply(entry: object) -> LLMReply:
    """A reply as the cache or a transcript stored it; TypeError if the entry is not one."""
    if not isinstance(entry, dict):
        raise TypeError(f"a reply is a JSON object, not {type(entry).__name__}")
    for name, value in entry.items():
        if name not in _REPLY_FIELDS or not isinstance(value, _REPLY_FIELDS[name]):
            raise TypeError(f"reply field {name!r} is not a {_REPLY_FIELDS.get(name, 'known field')}")
    reply = LLMReply(**entry)
    error = None if reply.error is None else _valid_text(reply.error)
    return replace(reply, text=_valid_text(reply.text), finish_reason=_valid_text(reply.finish_reason), error=error)


class ReplayClient(LLMClient):
    """Plays a transcript back: same interface, no endpoint.

    A request gets the first unused record with the same messages and seed; when none
    matches (the prompts changed), the next unused record in file order. Usage adds up the
    recorded replies (tokens, latency), so a replayed search reports what the original cost.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self._records: list[dict] = []
        self._error: str | None = None
        try:
            lines = self.path.read_bytes().split(b"\n")  # a record is one line: split on nothing else
        except OSError as exc:
            self._error = f"replay: cannot read transcript {self.path}: {exc}"
            return
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise TypeError(f"a record is a JSON object, not {type(record).__name__}")
                record["reply"] = _stored_reply(record["reply"])
            except (ValueError, TypeError, KeyError, RecursionError) as exc:
                self._error = f"replay: transcript {self.path} line {number} is not a record: {str(exc)[:200]!r}"
                return
            self._records.append(record)
        self._unused = list(range(len(self._records)))

    def complete(self, messages: list[dict], *, seed: int | None = None) -> LLMReply:
        reply = LLMReply(error=self._error) if self._error else self._next(messages, seed)
        self.usage.add(reply)
        return reply

    def _next(self, messages: list[dict], seed: int | None) -> LLMReply:
        if not self._unused:
            return LLMReply(error=f"replay: transcript {self.path} exhausted after {len(self._records)} replies")
        match = next((i for i in self._unused
                      if self._records[i].get("messages") == messages and self._records[i].get("seed") == seed),
                     self._unused[0])
        self._unused.remove(match)
        return self._records[match]["reply"]


def extract_program(text: str) -> str | None:
    """The program in an answer: the last ```python / ```py / ``` block, else the whole
    text if it is code (``sch.`` calls or a ``@T.prim_func``), else None.

    An unclosed fence runs to the end of the text, as in Markdown, so a truncated answer
    still yields what was written and admission can say where it breaks.
    """
    blocks = [body for lang, body in _fenced_blocks(text) if lang in ("", "python", "py", "python3")]
    blocks = [textwrap.dedent(body).strip() for body in blocks]
    blocks = [body for body in blocks if body]
    if blocks:
        return blocks[-1]
    if _is_code(text):
        return text.strip()
    return None


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block, in order."""
    blocks, lang, body = [], "", None
    for line in source_lines(text):  # the code's own lines: U+2028 in a string stays in it
        fence = line.strip()
        if body is None:
            if fence.startswith("```"):
                lang, body = (fence[3:].split() or [""])[0].lower(), []
        elif fence.startswith("```") and not fence.strip("`"):
            blocks.append((lang, "\n".join(body)))
            body = None
        else:
            body.append(line)
    if body is not None:
        blocks.append((lang, "\n".join(body)))
    return blocks


def _is_code(text: str) -> bool:
    if "sch." not in text and "@T.prim_func" not in text:
        return False
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False
    return True
