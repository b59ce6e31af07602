"""``hawk tune`` against endpoints that are dead or misbehave: every iteration ends in
bounded time, with the endpoint's error named, or with the offline proposer standing in
when ``--llm-fallback offline`` says so. Never a hang. (Each behaviour alone, with
retries: tests/propose/test_propose_llm.py.)"""

from __future__ import annotations

import json
import time

from hawk.cli import main

from ..propose.test_propose_llm import serve  # noqa: F401 - the local chat-completions server fixture


def _tune(url: str, tmp_path, budget: int, *extra: str) -> tuple[int, dict, float]:
    out = tmp_path / "report.json"
    start = time.monotonic()
    code = main(["tune", "--target", "davinci-like", "--workload", "silu_f32", "--budget", str(budget),
                 "--llm", "openai", "--model", "m", "--base-url", url, "--timeout", "1", "--retries", "0",
                 "--json", str(out), "-q", *extra])
    return code, json.loads(out.read_text()), time.monotonic() - start


def test_a_misbehaving_endpoint_is_a_named_error_per_iteration_in_bounded_time(serve, tmp_path):  # noqa: F811
    # one bad answer per iteration: server error, refused key, endless stream, 20 MiB, 30 s silence
    endpoint = serve(503, 401, ("drip", 0.3), ("huge", 20 << 20), ("sleep", 30))
    code, report, wall = _tune(endpoint.url, tmp_path, 5)
    assert code == 1
    history = report["workloads"][0]["fault_history"]
    assert [h["outcome"] for h in history] == ["no_proposal"] * 5
    assert all(h["message"].startswith("LLM call failed: ") for h in history), history
    assert wall < 60  # five 1-second deadlines and start-up, not 30 s of silence or an endless stream


def test_a_dead_endpoint_with_the_offline_fallback_still_tunes(serve, tmp_path):  # noqa: F811
    endpoint = serve("unused")
    endpoint.close()  # connection refused
    code, report, _ = _tune(endpoint.url, tmp_path, 3, "--llm-fallback", "offline")
    assert report["summary"]["llm_fallbacks"] == 3
    assert "no_proposal" not in report["workloads"][0]["outcomes"]  # the offline proposer wrote all three
    assert code in (0, 1)
