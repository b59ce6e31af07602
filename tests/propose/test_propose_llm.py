"""The LLM client against a real HTTP server on loopback, scripted per request."""

import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest.mock import ANY

import pytest
from hawk.propose.llm import (
    LLMConfig,
    LLMReply,
    OpenAIClient,
    ReplayClient,
    extract_program,
)

MAX_REQUESTS = 20  # a runaway client gets 400s (not retried) past this many requests
ASK = [{"role": "user", "content": "Schedule the matmul."}]
CHATTY = """Sure! Tiling the loops first:

```python
b0 = sch.get_sblock("C")
l1, l2, l3 = sch.get_loops(b0)
```

That should be fast. Let me know if it fails.
"""


class Endpoint:
    """A chat completions server that answers each request with the next scripted action.

    Actions: ``str`` (an answer), ``("length", str)`` (a truncated answer), an ``int`` (that
    HTTP status), ``("sleep", s)`` (sleep, then answer), a ``dict`` (that JSON body, status
    200). The last action repeats.
    """

    def __init__(self, script):
        self.script = list(script)
        self.requests = []
        self.release = threading.Event()  # wakes sleeping handlers at teardown
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                endpoint.handle(self)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.handle_error = lambda *args: None  # clients that timed out hang up early
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def handle(self, handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
        self.requests.append((handler.path, body))
        if len(self.requests) > MAX_REQUESTS:
            return self.send(handler, 400, {"error": {"message": "too many requests in a test"}})
        action = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(action, dict):
            return self.send(handler, 200, action)
        if isinstance(action, int):
            return self.send(handler, action, {"error": {"message": "scripted failure", "type": "server_error"}})
        finish = "stop"
        if isinstance(action, tuple) and action[0] == "drip":  # headers, then a byte now and then, forever
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(10**9))
            handler.end_headers()
            try:
                handler.wfile.write(b'{"id": "chatcmpl-drip", "choices": [{"message": {"content": "')
                while not self.release.wait(action[1]):
                    handler.wfile.write(b"x")
                    handler.wfile.flush()
            except OSError:  # the client hung up
                pass
            return None
        if isinstance(action, tuple) and action[0] == "huge":
            action = "x" * action[1]
        elif isinstance(action, tuple) and action[0] == "sleep":
            self.release.wait(action[1])
            action = "late"
        elif isinstance(action, tuple):
            finish, action = action
        self.send(handler, 200, {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": action}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        })

    def send(self, handler, status, payload):
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=1)


@pytest.fixture
def serve():
    endpoints = []

    def start(*script):
        endpoints.append(Endpoint(script))
        return endpoints[-1]

    yield start
    for endpoint in endpoints:
        endpoint.close()


def client_for(endpoint, **kwargs):
    settings = {"timeout_s": 0.5, "retries": 2, "backoff_s": 0.01}
    settings.update({k: kwargs.pop(k) for k in list(kwargs) if k in LLMConfig.__dataclass_fields__})
    return OpenAIClient(LLMConfig(model="test-model", base_url=endpoint.url, api_key="k", **settings), **kwargs)


# --- configuration -------------------------------------------------------------------------


def test_config_from_hawk_variables():
    env = {"HAWK_LLM_BASE_URL": "http://h/v1", "HAWK_LLM_API_KEY": "hk", "HAWK_LLM_MODEL": "m",
           "HAWK_LLM_TIMEOUT": "2.5", "HAWK_LLM_RETRIES": "5",
           "OPENAI_BASE_URL": "http://o/v1", "OPENAI_API_KEY": "ok"}
    cfg = LLMConfig.from_env(env)
    assert (cfg.base_url, cfg.api_key, cfg.model, cfg.timeout_s, cfg.retries) == ("http://h/v1", "hk", "m", 2.5, 5)
    assert "hk" not in repr(cfg)


def test_config_falls_back_to_openai_variables_and_overrides_win():
    env = {"OPENAI_BASE_URL": "http://o/v1", "OPENAI_API_KEY": "ok", "HAWK_LLM_MODEL": "m", "HAWK_LLM_RETRIES": "1"}
    cfg = LLMConfig.from_env(env, model="flag-model", retries=None, temperature=0.0, max_tokens=64)
    assert (cfg.base_url, cfg.api_key, cfg.model, cfg.retries) == ("http://o/v1", "ok", "flag-model", 1)
    assert (cfg.temperature, cfg.max_tokens) == (0.0, 64)


@pytest.mark.parametrize("env, variable", [
    ({"HAWK_LLM_BASE_URL": "http://h/v1"}, "HAWK_LLM_MODEL"),
    ({"HAWK_LLM_MODEL": "m"}, "HAWK_LLM_BASE_URL"),
    ({"HAWK_LLM_MODEL": "m", "HAWK_LLM_BASE_URL": "http://h/v1", "HAWK_LLM_TIMEOUT": "soon"}, "HAWK_LLM_TIMEOUT"),
    ({"HAWK_LLM_MODEL": "m", "HAWK_LLM_BASE_URL": "http://h/v1", "HAWK_LLM_RETRIES": "1.5"}, "HAWK_LLM_RETRIES"),
])
def test_config_errors_name_the_variable(env, variable):
    with pytest.raises(ValueError, match=variable):
        LLMConfig.from_env(env)


# --- talking to the endpoint ---------------------------------------------------------------


def test_a_normal_answer(serve):
    endpoint = serve("Hello.")
    client = client_for(endpoint, temperature=0.2, max_tokens=99)
    reply = client.complete(ASK, seed=7)
    assert reply.ok and reply.text == "Hello." and reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens, reply.cached) == (11, 7, False)
    path, body = endpoint.requests[0]
    assert path == "/v1/chat/completions"
    assert (body["model"], body["messages"], body["temperature"], body["max_tokens"], body["seed"]) == (
        "test-model", ASK, 0.2, 99, 7)
    usage = client.usage
    assert (usage.calls, usage.failures, usage.retries) == (1, 0, 0)
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    assert usage.wall_s > 0


def test_a_500_is_retried_and_counted(serve):
    endpoint = serve(500, "Recovered.")
    client = client_for(endpoint)
    reply = client.complete(ASK)
    assert reply.ok and reply.text == "Recovered."
    assert len(endpoint.requests) == 2
    assert (client.usage.calls, client.usage.retries, client.usage.failures) == (1, 1, 0)


def test_a_500_forever_is_an_error_value_after_the_retry_budget(serve):
    endpoint = serve(500)
    client = client_for(endpoint, retries=3)
    reply = client.complete(ASK)
    assert not reply.ok and reply.text == ""
    assert "InternalServerError" in reply.error and "4 attempts" in reply.error
    assert len(endpoint.requests) == 4
    assert (client.usage.calls, client.usage.retries, client.usage.failures) == (1, 3, 1)


def test_a_client_error_is_not_retried(serve):
    endpoint = serve(400)
    client = client_for(endpoint)
    reply = client.complete(ASK)
    assert "BadRequestError" in reply.error
    assert len(endpoint.requests) == 1 and client.usage.retries == 0


def test_a_slow_server_is_a_timeout_error_in_bounded_time(serve):
    endpoint = serve(("sleep", 5.0))
    client = client_for(endpoint, timeout_s=0.3, retries=1)
    start = time.monotonic()
    reply = client.complete(ASK)
    elapsed = time.monotonic() - start
    assert "Timeout" in reply.error and "2 attempts" in reply.error
    assert 0.55 <= elapsed < 1.5
    assert len(endpoint.requests) == 2 and client.usage.failures == 1


def test_an_endless_answer_is_an_error_in_bounded_time(serve):
    endpoint = serve(("drip", 0.1))
    start = time.perf_counter()
    reply = client_for(endpoint, timeout_s=1.0, retries=1).complete(ASK)
    assert reply.error and not reply.text
    assert time.perf_counter() - start < 1.0 * 2 + 2  # each attempt ends at its deadline, not when bytes stop


def test_an_answer_of_many_megabytes_is_refused(serve):
    endpoint = serve(("huge", 20 * 2**20))
    reply = client_for(endpoint, timeout_s=5.0, retries=0).complete(ASK)
    assert reply.error and "large" in reply.error and not reply.text


def test_no_server_listening_is_an_error_value(serve):
    endpoint = serve("unused")
    endpoint.close()
    reply = client_for(endpoint, retries=1).complete(ASK)
    assert "APIConnectionError" in reply.error


def test_a_truncated_answer_reports_length(serve):
    endpoint = serve(("length", 'Here:\n```python\nb0 = sch.get_sblock("C")\nl1, l2 = sch.get_lo'))
    reply = client_for(endpoint).complete(ASK)
    assert reply.ok and reply.finish_reason == "length"
    assert extract_program(reply.text) == 'b0 = sch.get_sblock("C")\nl1, l2 = sch.get_lo'


def test_a_chatty_answer_yields_its_program(serve):
    reply = client_for(serve(CHATTY)).complete(ASK)
    assert extract_program(reply.text) == 'b0 = sch.get_sblock("C")\nl1, l2, l3 = sch.get_loops(b0)'


def test_an_answer_without_a_program_yields_none(serve):
    reply = client_for(serve("I cannot schedule this, the shapes are unknown.")).complete(ASK)
    assert reply.ok and extract_program(reply.text) is None


def test_a_200_that_is_not_a_chat_completion_is_an_error_value(serve):
    for body in ({"choices": []}, {"choices": [{"message": {"content": 5}}]}, {"error": "not here"}):
        reply = client_for(serve(body)).complete(ASK)
        assert "did not return a chat completion" in reply.error


# --- cache ---------------------------------------------------------------------------------


def test_the_second_identical_call_is_a_cache_hit(serve, tmp_path):
    endpoint = serve("Cached answer.")
    client = client_for(endpoint, cache_dir=tmp_path / "cache")
    first, second = client.complete(ASK, seed=1), client.complete(ASK, seed=1)
    assert len(endpoint.requests) == 1
    assert second.cached and not first.cached and second.text == first.text == "Cached answer."
    assert (client.usage.calls, client.usage.cache_hits, client.usage.prompt_tokens) == (2, 1, 11)
    client.complete(ASK, seed=2)  # another sample is another request
    assert len(endpoint.requests) == 2
    # a fresh client (another process) reads the same entries
    assert client_for(endpoint, cache_dir=tmp_path / "cache").complete(ASK, seed=1).cached
    assert len(endpoint.requests) == 2
    assert not list((tmp_path / "cache").glob(".*.tmp"))


def test_errors_are_not_cached(serve, tmp_path):
    endpoint = serve(500, 500, "Fine now.")
    client = client_for(endpoint, cache_dir=tmp_path, retries=1)
    assert not client.complete(ASK).ok
    reply = client.complete(ASK)
    assert reply.ok and not reply.cached and len(endpoint.requests) == 3


@pytest.mark.parametrize("garbage", ["{not json", '{"unexpected": 1}', '{"text": "x", "error": "old failure"}', ""])
def test_a_corrupt_cache_entry_is_ignored_and_overwritten(serve, tmp_path, garbage):
    endpoint = serve("Fresh answer.")
    client_for(endpoint, cache_dir=tmp_path).complete(ASK)
    (entry,) = tmp_path.glob("*.json")
    entry.write_text(garbage)
    client = client_for(endpoint, cache_dir=tmp_path)
    reply = client.complete(ASK)
    assert reply.ok and reply.text == "Fresh answer." and not reply.cached
    assert len(endpoint.requests) == 2
    assert json.loads(entry.read_text())["text"] == "Fresh answer."
    assert client.complete(ASK).cached


# --- transcripts and replay ----------------------------------------------------------------


def test_a_recorded_transcript_replays_without_the_server(serve, tmp_path):
    transcript = tmp_path / "runs" / "transcript.jsonl"
    endpoint = serve("First.", 400, CHATTY)
    client = client_for(endpoint, transcript=transcript, cache_dir=tmp_path / "cache")
    asks = [ASK, [{"role": "user", "content": "Again."}], [{"role": "user", "content": "Once more."}], ASK]
    recorded = [client.complete(messages, seed=3) for messages in asks]
    assert [r.ok for r in recorded] == [True, False, True, True] and recorded[3].cached
    endpoint.close()

    lines = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert len(lines) == 4
    assert lines[1]["messages"] == asks[1] and "BadRequestError" in lines[1]["reply"]["error"]
    assert lines[0]["reply"]["prompt_tokens"] == 11 and lines[0]["model"] == "test-model"

    replay = ReplayClient(transcript)
    assert [replay.complete(messages, seed=3) for messages in asks] == recorded
    usage = replay.usage
    assert (usage.calls, usage.failures, usage.cache_hits, usage.prompt_tokens) == (4, 1, 1, 22)


def test_replay_matches_by_request_then_falls_back_to_order(serve, tmp_path):
    transcript = tmp_path / "t.jsonl"
    client = client_for(serve("One.", "Two.", "Three."), transcript=transcript)
    for content in ("a", "b", "c"):
        client.complete([{"role": "user", "content": content}])
    replay = ReplayClient(transcript)
    assert replay.complete([{"role": "user", "content": "b"}]).text == "Two."
    assert replay.complete([{"role": "user", "content": "changed prompt"}]).text == "One."
    assert replay.complete([{"role": "user", "content": "c"}], seed=9).text == "Three."  # seed differs: in order


def test_an_exhausted_replay_is_an_error_value(serve, tmp_path):
    transcript = tmp_path / "t.jsonl"
    client_for(serve("Only one."), transcript=transcript).complete(ASK)
    replay = ReplayClient(transcript)
    assert replay.complete(ASK).text == "Only one."
    reply = replay.complete(ASK)
    assert not reply.ok and "exhausted after 1 replies" in reply.error
    assert (replay.usage.calls, replay.usage.failures) == (2, 1)


def test_an_unreadable_transcript_is_an_error_value(tmp_path):
    missing = ReplayClient(tmp_path / "missing.jsonl").complete(ASK)
    assert "cannot read transcript" in missing.error
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"messages": ASK, "seed": None, "reply": {"text": "ok"}}) + "\n{truncated\n")
    reply = ReplayClient(broken).complete(ASK)
    assert "line 2 is not a record" in reply.error


# --- extracting the program ----------------------------------------------------------------


@pytest.mark.parametrize("text, program", [
    ("```py\nsch.fuse(l0, l1)\n```", "sch.fuse(l0, l1)"),
    ("Plan:\n```\nsch.fuse(l0, l1)\n```\nDone.", "sch.fuse(l0, l1)"),
    ("Draft:\n```python\nsch.old()\n```\nBetter:\n```Python\nsch.new()\n```\n", "sch.new()"),
    ("```python\nsch.code()\n```\nOutput:\n```json\n{\"cycles\": 3}\n```", "sch.code()"),
    ("1. Do this:\n   ```python\n   b0 = sch.get_sblock(\"C\")\n   ```\n", 'b0 = sch.get_sblock("C")'),
    ('b0 = sch.get_sblock("C")\nl1, l2 = sch.get_loops(b0)\n', 'b0 = sch.get_sblock("C")\nl1, l2 = sch.get_loops(b0)'),
    ("@T.prim_func\ndef main(A: T.Buffer((4,), \"float32\")):\n    T.evaluate(0)\n",
     "@T.prim_func\ndef main(A: T.Buffer((4,), \"float32\")):\n    T.evaluate(0)"),
    ("Use sch.split on the inner loop, then vectorize.", None),
    ("```python\n\n```", None),
    ("", None),
])
def test_extract_program(text, program):
    assert extract_program(text) == program


def test_replies_are_plain_values():
    reply = LLMReply(error="boom")
    assert not reply.ok and reply.text == "" and LLMReply(text="x").ok


# --- any text an endpoint returns ----------------------------------------------------------

# Line ends for str.splitlines but not for JSON lines, lone surrogates (JSON can carry them;
# they cannot be encoded), NULs, and megabytes.
ODD_TEXTS = ["a\u2028b", "\u2029", "x\x85y\x1c\x1d\x1e\x0b\x0cz", "lone \ud800 surrogate", "\udcff",
             "nul\x00byte", "pair \ud83d\ude00", "M" * 3_000_000 + "\u2028end"]


@pytest.mark.parametrize("text", ODD_TEXTS, ids=range(len(ODD_TEXTS)))
def test_any_reply_survives_the_cache_the_transcript_and_replay(serve, tmp_path, text):
    expected = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert "\ud800" not in expected and "\udcff" not in expected
    endpoint = serve(text)
    transcript, cache = tmp_path / "t.jsonl", tmp_path / "cache"
    client = client_for(endpoint, transcript=transcript, cache_dir=cache)
    reply = client.complete(ASK, seed=1)
    assert reply.ok and reply.text == expected
    reply.text.encode()  # valid Unicode from here on
    # the answer goes back into the next prompt (feedback quotes it), and callers' raw text too
    for content in (reply.text, text):
        assert client.complete([{"role": "user", "content": content}], seed=1).ok
    assert client_for(endpoint, cache_dir=cache).complete(ASK, seed=1) == replace(reply, cached=True,
                                                                                   latency_s=ANY)
    assert transcript.read_bytes().isascii() and transcript.read_bytes().count(b"\n") == 3
    replay = ReplayClient(transcript)
    assert replay.complete(ASK, seed=1).text == expected
    assert replay.complete([{"role": "user", "content": reply.text}], seed=1).ok
    assert replay.complete([{"role": "user", "content": text}], seed=1).ok


def test_old_transcripts_with_raw_line_separators_still_replay(tmp_path):
    transcript = tmp_path / "old.jsonl"
    record = {"messages": ASK, "seed": None, "reply": {"text": "one\u2028two\x85three"}}
    transcript.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert ReplayClient(transcript).complete(ASK).text == "one\u2028two\x85three"


@pytest.mark.parametrize("garbage", [b'"just a string"', b"[1]", b'{"text": 5}', b"\xff\xfe{}",
                                     b'{"text": "x", "prompt_tokens": "many"}', b'{"text": "x", "cached": 1}',
                                     b"[" * 100_000 + b"]" * 100_000, b'{"text": "x", "extra": 1}'])
def test_an_unreadable_cache_entry_is_a_miss(serve, tmp_path, garbage):
    endpoint = serve("Fresh answer.")
    client_for(endpoint, cache_dir=tmp_path).complete(ASK)
    (entry,) = tmp_path.glob("*.json")
    entry.write_bytes(garbage)
    reply = client_for(endpoint, cache_dir=tmp_path).complete(ASK)
    assert reply.ok and reply.text == "Fresh answer." and not reply.cached
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("garbage", [b"\xff\xfe\n", b"[1, 2]\n", b"[" * 100_000 + b"\n",
                                     b'{"messages": [], "reply": {"text": "x", "prompt_tokens": "many"}}\n'])
def test_an_unreadable_transcript_line_is_an_error_value(tmp_path, garbage):
    transcript = tmp_path / "t.jsonl"
    transcript.write_bytes(json.dumps({"messages": ASK, "reply": {"text": "ok"}}).encode() + b"\n" + garbage)
    reply = ReplayClient(transcript).complete(ASK)
    assert not reply.ok and "line 2 is not a record" in reply.error


@pytest.mark.parametrize("text", ["sch.fuse(" + "-" * 39_000 + "1)", "sch.fuse(" + "1+" * 30_000 + "1)",
                                  "```python\nb0 = sch.get_sblock(name='a\u2028b')\n```"])
def test_extract_program_never_raises(text):
    program = extract_program(text)
    assert program is None or "\u2028" in program  # a U+2028 inside the code stays inside it
