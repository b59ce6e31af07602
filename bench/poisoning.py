"""Poison a learned store, then see whether distillation cleans it up.

    python bench/poisoning.py --kb LEARNED.sqlite --target T --out DIR [--suite level2] [--noise 0.2]

Makes three copies of LEARNED (a store ``hawk bench --knowledge cold`` built on level1):
``clean``; ``poison``: plus seven plausible but wrong triples -- each a copy of a real
triple's context (so retrieval ranks it next to the real one) with a fix that does harm
(a scope the unit cannot use, a staging scope with no path, tiles cut to slivers, ...) and
a forged record of two successes out of two; ``noise``: a fraction of the real triples with
their parameters replaced by wrong ones, records kept. Then runs ``hawk bench --knowledge
warm --kb-learn`` on SUITE with each, with distillation and without (``--kb-ablation
no-distill``), and prints accuracy, speed against the clean store, and what became of the
bad triples (pruned or not, after how many applications).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from hawk.knowledge import KnowledgeStore, Triple
from hawk.knowledge.triple import Executable, Semantics
from hawk.npu import api_view, load_spec


def harmful(view, code: str, pipe: str) -> Executable | None:
    """A fix for this trigger that an author could believe and that does harm."""
    onchip = [s for s in view.scopes if s != "global"]
    mma = next((name for name in view.intrinsics if ".mma_" in name), None)
    wrong = view.operands(mma)["C"][2] if mma else onchip[-1]  # the accumulator: no place for staging
    table = {
        "SCOPE_OVERFLOW": Executable("tile_columns", {"factor": 1}, "fault_gone"),
        "ILLEGAL_PATH": Executable("feed", {"dst": onchip[0], "via": wrong}, "fault_gone"),
        "UNIT_SCOPE": Executable("rescope", {"scope": onchip[0], "to": wrong}, "fault_gone"),
        "FRACTAL_MISMATCH": Executable("rescope", {"scope": onchip[0], "to": wrong}, "fault_gone"),
        "DMA_MISALIGN": Executable("retile", {"factor": 0.25}, "fault_gone"),
    }
    if code:
        return table.get(code)
    return {"SCALAR": Executable("retile", {"factor": 0.125}, "faster"),
            "VECTOR": Executable("retile", {"factor": 0.25}, "faster")}.get(pipe,
                                                                            Executable("retile", {"factor": 0.25},
                                                                                       "faster"))


def poison(store: KnowledgeStore, view, count: int = 7, *, forge: bool = False) -> dict[str, int]:
    """Seven bad triples, as an import brings them (unverified, no record), or with a forged
    record of two successes (``forge``: a store written to by someone who lies)."""
    real = store.triples()
    out, seen = {}, set()
    for t in real:
        key = t.context.code or t.context.pipe
        exe = harmful(view, t.context.code, t.context.pipe)
        if exe is None or key in seen or exe.call() == t.executable.call():
            continue
        seen.add(key)
        prov = replace(t.provenance, run="poison", source="import", before="", after="")
        bad = Triple.new(t.context, Semantics(f"{t.semantics.text} (reported fix)", dict(t.semantics.observed)),
                         exe, prov)
        bad = bad.with_stats(verified=True, applications=2, successes=2) if forge else \
            bad.with_stats(verified=False, applications=0, successes=0)
        store.add(bad)
        out[bad.id] = bad.stats.applications
        if len(out) == count:
            break
    return out


def add_noise(store: KnowledgeStore, fraction: float, seed: int = 0) -> dict[str, int]:
    rng = random.Random(seed)
    real = store.triples()
    picked = rng.sample(real, max(1, round(fraction * len(real))))
    scopes = sorted({v for t in real for v in t.executable.params.values() if isinstance(v, str)})
    out = {}
    for t in picked:
        params = {}
        for k, v in t.executable.params.items():
            if isinstance(v, str):
                params[k] = rng.choice([s for s in scopes if s != v] or [v])
            elif isinstance(v, (int, float)):
                params[k] = type(v)(max(1, v // 4)) if v >= 4 else v * 4
        noisy = replace(t, executable=Executable(t.executable.rewrite, params, t.executable.check, ""))
        store.put(noisy)
        out[t.id] = t.stats.applications
    return out


def fate(path: Path, ids: dict[str, int]) -> dict:
    """How many of the bad triples are gone, and after how many applications each (its
    record at the prune minus the record it came in with)."""
    with KnowledgeStore(path) as kb:
        statuses = {i: kb.get(i).stats for i in ids if kb.get(i) is not None}
        pruned_after = []
        for h in kb.history():
            for before in h["before"]:
                if before["id"] in ids and h["action"] != "revert" and h["after"][0]["stats"]["status"] != "active":
                    pruned_after.append(before["stats"]["applications"] - ids[before["id"]])
    return {"bad": len(ids), "pruned": sum(s.status != "active" for s in statuses.values()),
            "applications_until_pruned": pruned_after,
            "applications": sorted(s.applications - ids[i] for i, s in statuses.items())}


def summary(path: Path) -> dict:
    doc = json.loads(path.read_text())
    rows = [s["loop"] for w in doc["workloads"] for s in w["seeds"] if s.get("loop")]
    solved = [r for r in rows if r["correct"]]
    return {"accuracy": len(solved) / len(rows), "cycles": {w["name"]: w["cycles"] for w in doc["workloads"]}}


def speed(run: dict, clean: dict) -> float | None:
    import math

    logs = [math.log(clean["cycles"][n] / c) for n, c in run["cycles"].items() if c and clean["cycles"].get(n)]
    return math.exp(sum(logs) / len(logs)) if logs else None


def _load(out: Path, name: str) -> dict | None:
    """An earlier run's summary of one store (from ``poisoning.json``)."""
    earlier = json.loads((out / "poisoning.json").read_text()) if (out / "poisoning.json").exists() else {}
    return earlier.get(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", required=True, help="a store learned on level1")
    ap.add_argument("--target", required=True)
    ap.add_argument("--suite", default="level2")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--out", required=True)
    ap.add_argument("--forge", action="store_true", help="poison with forged records of two successes")
    ap.add_argument("--only", default="", help="make and run only the stores whose name starts with this "
                                               "(runs in parallel each take their own)")
    ap.add_argument("--hawk", default=str(Path(sys.executable).with_name("hawk")))
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    view = api_view(load_spec(a.target))
    bad: dict[str, dict[str, int]] = {"clean": {}}
    for variant in ("clean", "poison", "noise"):
        for mode in ("distill", "no-distill"):
            if (variant == "clean" and mode == "no-distill") or not f"{variant}-{mode}".startswith(a.only):
                continue
            path = out / f"{variant}-{mode}.sqlite"
            shutil.copy(a.kb, path)
            with KnowledgeStore(path) as kb:
                if variant == "poison":
                    bad["poison"] = poison(kb, view, forge=a.forge)
                elif variant == "noise":
                    bad["noise"] = add_noise(kb, a.noise)
    results = {}
    for path in sorted(out.glob(f"{a.only}*.sqlite")):
        variant, mode = path.stem.split("-", 1)
        cmd = [a.hawk, "bench", "--suite", a.suite, "--target", a.target, "--baselines", "loop", "--knowledge",
               "warm", "--kb", str(path), "--kb-learn", "--json", str(path.with_suffix(".json")), "-q"]
        if mode == "no-distill":
            cmd += ["--kb-ablation", "no-distill"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results[path.stem] = {**summary(path.with_suffix(".json")), **fate(path, bad.get(variant, {}))}
    clean = results.get("clean-distill") or _load(out, "clean-distill")  # None while a parallel run makes it
    print(f"{a.suite} {a.target}, store {a.kb}")
    print("| store | distillation | accuracy | speed vs clean | bad triples pruned | applications until pruned |")
    print("|---|---|---:|---:|---:|---|")
    for name, r in results.items():
        variant, mode = name.split("-", 1)
        s = speed(r, clean) if clean else None
        print(f"| {variant} | {'on' if mode == 'distill' else 'off'} | {100 * r['accuracy']:.1f}% | "
              f"{'-' if s is None else f'{s:.2f}x'} | {r['pruned']}/{r['bad']} | {r['applications_until_pruned']} |")
    earlier = json.loads((out / "poisoning.json").read_text()) if (out / "poisoning.json").exists() else {}
    (out / "poisoning.json").write_text(json.dumps({**earlier, **results}, indent=1))


if __name__ == "__main__":
    main()
