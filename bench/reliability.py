"""The full reliability campaign (issue 13), one command:

    python bench/reliability.py --out docs/bench/reliability

1. the fuzzing campaign: ``--proposals`` (default 1,000) hypothesis-drawn hostile proposals
   through ``hawk tune`` with a replaying endpoint (tests/reliability/campaign.py);
2. the full versions of the other checks, as tests marked slow: 100 SIGKILLs of a store
   writer, 16 processes learning at once, interrupting a model's tuning with task
   processes (plus every default reliability test beside them);
3. the adversarial standing set (bench/adversarial.py).

Writes ``fuzz.json`` and ``summary.md`` into ``--out``; exits non-zero if anything failed.
The short versions run in CI with the default test command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.reliability.campaign import MEMORY_BOUND_MB, run_campaign

FULL_TESTS = ["tests/reliability", "tests/knowledge/test_knowledge_crash.py", "tests/knowledge/test_knowledge_store.py",
              "tests/propose/test_propose_llm.py"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("reliability-report"))
    ap.add_argument("--proposals", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exec-timeout", type=float, default=3.0, help="per kernel run, as hawk tune --exec-timeout")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: fuzz,tests,adversarial")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    lines, failed = ["# Reliability campaign", ""], False

    if "fuzz" not in skip:
        with tempfile.TemporaryDirectory(prefix="hawk-fuzz-") as work:
            result = run_campaign(args.proposals, Path(work), seed=args.seed, exec_timeout=args.exec_timeout)
        doc = result.to_dict()
        (args.out / "fuzz.json").write_text(json.dumps(doc, indent=1) + "\n")
        failed |= bool(result.problems)
        lines += _fuzz_table(doc)

    if "tests" not in skip:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "slow or not slow", "-p", "no:cacheprovider",
                               *FULL_TESTS], cwd=ROOT, capture_output=True, text=True, check=False)
        tail = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        failed |= proc.returncode != 0
        lines += ["## Full tests (slow included)", "", (f"`pytest -m 'slow or not slow' {' '.join(FULL_TESTS)}`: "
                  f"{tail} ({time.perf_counter() - start:.0f} s)"), ""]
        if proc.returncode:
            print(proc.stdout[-5000:], file=sys.stderr)

    if "adversarial" not in skip:
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "adversarial.py"), "--out",
                               str(args.out / "adversarial.json")], cwd=ROOT, capture_output=True, text=True, check=False)
        failed |= proc.returncode != 0
        lines += ["## Adversarial standing set", "", proc.stdout.strip(), ""]

    lines.append("**result: " + ("FAILED" if failed else "passed") + "**")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if failed else 0


def _fuzz_table(doc: dict) -> list[str]:
    outcomes = list(doc["outcomes"])
    rows = ["## Fuzzing campaign", "",
            (f"{doc['proposals']} proposals through `hawk tune` (replaying endpoint) in {doc['wall_s']:.0f} s; "
            f"tuner exit code {doc['exit_code']}; peak tuner RSS {doc['peak_rss_mb']:.0f} MB "
            f"(bound {MEMORY_BOUND_MB} MB); unclassified {doc['unclassified']}; files outside the sandbox "
            f"{len(doc['files_outside'])}; connections to the canaries {doc['connections']}; internet sockets "
            f"{len(doc['sockets_seen'])}; processes left {len(doc['survivors'])}; problems: "
            f"{'; '.join(doc['problems']) or 'none'}"), "",
            "| class | proposals | " + " | ".join(outcomes) + " |",
            "|---|---:|" + "---:|" * len(outcomes)]
    for cls, counts in doc["by_class"].items():
        rows.append(f"| {cls} | {sum(counts.values())} | " + " | ".join(str(counts.get(o, "")) for o in outcomes)
                    + " |")
    rows.append(f"| all | {doc['proposals']} | " + " | ".join(str(doc["outcomes"][o]) for o in outcomes) + " |")
    return rows + [""]


if __name__ == "__main__":
    sys.exit(main())
