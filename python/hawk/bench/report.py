"""Benchmark results for people: the ``summary`` numbers of a ``hawk bench`` result, and
a Markdown report with PNG plots rendered from the whole result.

``summarize`` is what the bench driver calls to fill ``result["summary"]``;
``write_report`` is what a user and a reviewer read instead of the JSON.
matplotlib is imported only inside the plotting code, with the Agg backend, so importing
this module needs neither matplotlib nor a display.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import Counter
from pathlib import Path

METHODS = ("reference", "metaschedule", "loop")
LABELS = {"reference": "Reference", "metaschedule": "MetaSchedule", "loop": "Hawk loop",
          "roofline": "Roofline"}
COLORS = {"reference": "#7f7f7f", "metaschedule": "#ff7f0e", "loop": "#1f77b4"}
# Where the aggregated (median over seeds) cycles of each method live in a workload entry.
CYCLES_KEY = {"reference": "reference_cycles", "metaschedule": "metaschedule_cycles", "loop": "cycles"}
PNG_DPI = 120


# --------------------------------------------------------------------------- numbers

def geomean(values) -> float | None:
    """Geometric mean of the positive values, or None when there are none."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    return math.exp(sum(logs) / len(logs)) if logs else None


def ratio(num, den) -> float | None:
    """num / den, or None unless both are positive numbers (a missing or zero cycle count)."""
    if num is None or den is None or num <= 0 or den <= 0:
        return None
    return num / den


def _fraction(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _run(w: dict, seed: int, method: str) -> dict | None:
    """One method's run of workload ``w`` in ``seed``; None when it did not run."""
    for s in w.get("seeds") or []:
        if s.get("seed") == seed:
            return s.get(method)
    return None


def _solved(run: dict | None) -> bool:
    return bool(run and run.get("legal") and run.get("correct"))


def cycles(w: dict, method: str) -> int | None:
    """A method's aggregated cycles on ``w`` (None when unsolved or absent)."""
    if method == "roofline":
        return w.get("roofline_cycles")
    if method == "reference" and _reference_status(w) != "ok":
        return None  # only a legal and correct reference has cycles worth comparing
    return w.get(CYCLES_KEY[method])


def seed_cycles(w: dict, seed: int, method: str) -> int | None:
    """A method's cycles on ``w`` in one seed; only a legal and correct kernel has cycles
    worth comparing. The reference is deterministic, so it is the same in every seed."""
    if method == "reference":
        return cycles(w, "reference")
    run = _run(w, seed, method)
    return run.get("cycles") if _solved(run) else None


def speedup_stats(workloads, slow: str, fast: str, cyc=cycles) -> dict:
    """Geomean of slow_cycles / fast_cycles over the workloads where both have cycles."""
    ratios = [r for w in workloads if (r := ratio(cyc(w, slow), cyc(w, fast))) is not None]
    return {"geomean": geomean(ratios), "n": len(ratios)}


def roofline_fraction(workloads, method: str) -> float | None:
    return geomean(ratio(w.get("roofline_cycles"), cycles(w, method)) for w in workloads)


def _runs(workloads, seeds, method) -> list[dict | None]:
    # A missing run (crash, seed entry absent) counts as a failed run, not as no run.
    return [_run(w, s, method) for w in workloads for s in seeds]


def _loop_summary(workloads, seeds) -> dict:
    runs = _runs(workloads, seeds, "loop")
    done = [r for r in runs if r]
    iterations = sum(r.get("iterations") or 0 for r in done)
    legal_candidates = sum(r.get("legal_candidates") or 0 for r in done)
    return {"compile_rate": _fraction([bool(r and r.get("legal")) for r in runs]),
            "accuracy": _fraction([_solved(r) for r in runs]),
            "pass_at_1": _fraction([bool(r and r.get("pass_at_1")) for r in runs]),
            "candidate_legal_rate": legal_candidates / iterations if iterations else None,
            "roofline_fraction": roofline_fraction(workloads, "loop")}


def _metaschedule_summary(workloads, seeds) -> dict:
    runs = _runs(workloads, seeds, "metaschedule")
    return {"compile_rate": _fraction([bool(r and r.get("legal")) for r in runs]),
            "accuracy": _fraction([_solved(r) for r in runs]),
            "roofline_fraction": roofline_fraction(workloads, "metaschedule")}


def _reference_status(w: dict) -> str:
    return (w.get("reference") or {}).get("status", "none")


def _reference_summary(workloads) -> dict:
    return {"available": sum(_reference_status(w) != "none" for w in workloads),
            "accuracy": _fraction([_reference_status(w) == "ok" for w in workloads]),
            "roofline_fraction": roofline_fraction(workloads, "reference")}


def _speedup_summary(workloads, baselines) -> dict:
    def stats(slow, fast):
        if slow in baselines and fast in baselines:
            return speedup_stats(workloads, slow, fast)
        return {"geomean": None, "n": 0}
    return {"vs_reference": stats("reference", "loop"),
            "vs_metaschedule": stats("metaschedule", "loop"),
            "metaschedule_vs_reference": stats("reference", "metaschedule")}


def _seed_summary(workloads, baselines, seed) -> dict:
    def accuracy(method):
        if method not in baselines:
            return None
        return _fraction([_solved(_run(w, seed, method)) for w in workloads])

    def speedup(slow):
        if slow not in baselines or "loop" not in baselines:
            return {"geomean": None, "n": 0}
        return speedup_stats(workloads, slow, "loop", cyc=lambda w, m: seed_cycles(w, seed, m))

    vs_reference, vs_metaschedule = speedup("reference"), speedup("metaschedule")
    # n: this seed's speedups cover the workloads both sides solved in this seed
    return {"seed": seed, "loop_accuracy": accuracy("loop"),
            "metaschedule_accuracy": accuracy("metaschedule"),
            "speedup_vs_reference": vs_reference["geomean"], "n_vs_reference": vs_reference["n"],
            "speedup_vs_metaschedule": vs_metaschedule["geomean"], "n_vs_metaschedule": vs_metaschedule["n"]}


def _flagged_summary(workloads) -> dict:
    """Kernels the gate held for review: how many per method, in all, and on how many workloads."""
    found = [f for w in workloads for f in w.get("flagged") or []]
    return {**{m: sum(f.get("method") == m for f in found) for m in METHODS},
            "total": len(found), "workloads": sum(bool(w.get("flagged")) for w in workloads)}


def summarize(workloads: list[dict], baselines: list[str], seeds: list[int]) -> dict:
    """The ``summary`` object of a bench result, computed from its per-workload entries.

    A run is one (workload, seed); rates are over all runs, so a run that is missing
    counts as failed. Geometric means are over the workloads where both sides have
    cycles, and the ``n`` beside each says how many that was. A method absent from
    ``baselines`` gets None (and its speedups ``{"geomean": None, "n": 0}``). ``flagged``
    counts the kernels the gate held for review; none of them is in any other figure."""
    present = set(baselines)
    return {
        "workloads": len(workloads),
        "runs": len(workloads) * len(seeds),
        "loop": _loop_summary(workloads, seeds) if "loop" in present else None,
        "metaschedule": _metaschedule_summary(workloads, seeds) if "metaschedule" in present else None,
        "reference": _reference_summary(workloads) if "reference" in present else None,
        "speedup": _speedup_summary(workloads, present),
        "per_seed": [_seed_summary(workloads, present, s) for s in seeds],
        "flagged": _flagged_summary(workloads),
    }


# --------------------------------------------------------------------------- formatting

def fmt_pct(v) -> str:
    if v is None:
        return "-"
    # Roofline fractions go down to 1e-4: keep two significant digits instead of "0.0%".
    return f"{v * 100:.1f}%" if v == 0 or v * 100 >= 0.1 else f"{v * 100:.2g}%"


def fmt_x(v) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}x" if v >= 0.01 else f"{v:.2g}x"


def fmt_cycles(v) -> str:
    return "-" if v is None else f"{int(v):,}"


def fmt_stats(stats: dict | None) -> str:
    if not stats or stats.get("geomean") is None:
        return "-"
    return f"{fmt_x(stats['geomean'])} (n={stats['n']})"


def fmt_duration(seconds) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    return f"{m}m {s:02d}s" if m else f"{seconds:.1f}s"


def _cell(v) -> str:
    # A '|' inside a cell would split the Markdown table.
    return ("-" if v is None or v == "" else str(v)).replace("|", "\\|")


def md_table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> str:
    """A Markdown table; columns whose index is in ``right`` are right-aligned (numbers)."""
    align = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report text

def _sorted(workloads) -> list[dict]:
    return sorted(workloads, key=lambda w: (w.get("category") or "", w.get("name") or ""))


def _seeds(result) -> list[int]:
    return list((result.get("provenance") or {}).get("seeds") or [])


def _title(result) -> str:
    p = result.get("provenance") or {}
    return f"# Hawk bench: `{p.get('suite', '?')}` on `{p.get('target', '?')}`"


def _provenance(result) -> str:
    p = result.get("provenance") or {}
    commit = p.get("commit") or "-"
    if p.get("dirty"):
        commit += " (dirty: uncommitted changes)"
    rows = [["Suite", p.get("suite")], ["Target", p.get("target")], ["Proposer (LLM)", p.get("llm")],
            ["Budget (proposals per workload)", p.get("budget")],
            ["Seeds", ", ".join(str(s) for s in _seeds(result)) or None],
            ["Input sets per host check", p.get("trials")], ["Commit", commit], ["Date", p.get("date")],
            ["Machine", p.get("machine")],
            ["Versions", f"hawk {p.get('hawk_version', '?')}, TVM {p.get('tvm_version', '?')}"],
            ["Total wall time", fmt_duration(result.get("wall_s"))]]
    command = p.get("command") or "(command not recorded)"
    return f"```\n{command}\n```\n\n" + md_table(["Provenance", ""], rows)


def _loop_vs_roofline(workloads) -> dict:
    # The roofline is a bound, not a kernel: the loop's "speedup" against it is its
    # roofline fraction, over the workloads the loop solved.
    return speedup_stats(workloads, "roofline", "loop")


def _summary_rows(result, summary) -> list[list]:
    present = result.get("baselines") or []
    speed = summary.get("speedup") or {}
    rows = []
    if "loop" in present and summary.get("loop"):
        s = summary["loop"]
        rows.append([LABELS["loop"], fmt_pct(s.get("compile_rate")), fmt_pct(s.get("accuracy")),
                     fmt_pct(s.get("pass_at_1")), fmt_pct(s.get("roofline_fraction")), "-"])
    if "metaschedule" in present and summary.get("metaschedule"):
        s = summary["metaschedule"]
        rows.append([LABELS["metaschedule"], fmt_pct(s.get("compile_rate")), fmt_pct(s.get("accuracy")),
                     "-", fmt_pct(s.get("roofline_fraction")), fmt_stats(speed.get("vs_metaschedule"))])
    if "reference" in present and summary.get("reference"):
        s = summary["reference"]
        label = f"Reference ({s.get('available', 0)}/{summary.get('workloads', 0)} workloads have one)"
        rows.append([label, "-", fmt_pct(s.get("accuracy")), "-", fmt_pct(s.get("roofline_fraction")),
                     fmt_stats(speed.get("vs_reference"))])
    loop_vs_roof = _loop_vs_roofline(result.get("workloads") or []) if "loop" in present else None
    rows.append(["Roofline (bound: the fastest the NPU model allows)", "-", "-", "-", "100.0%",
                 fmt_stats(loop_vs_roof)])
    return rows


def _summary_notes(result, summary) -> list[str]:
    present = result.get("baselines") or []
    notes = [(f"{summary.get('workloads', 0)} workloads x {len(_seeds(result))} seeds = "
              f"{summary.get('runs', 0)} runs. Compile rate: runs that produced a kernel the NPU accepts (legal); "
              "accuracy: legal and correct; fractions of roofline and speedups are geometric "
              "means over the workloads both sides solved (n), using the median cycles over seeds.")]
    loop = summary.get("loop")
    if loop:
        workloads = result.get("workloads") or []
        calls = sum(w.get("llm_calls") or 0 for w in workloads)
        notes.append(f"Hawk loop: {fmt_pct(loop.get('candidate_legal_rate'))} of proposed candidates "
                     f"were legal; {calls} LLM calls in total.")
    ms_ref = (summary.get("speedup") or {}).get("metaschedule_vs_reference")
    if "metaschedule" in present and "reference" in present:
        notes.append(f"MetaSchedule against the reference: {fmt_stats(ms_ref)}.")
    flagged = summary.get("flagged") or {}
    if flagged.get("total"):
        notes.append(f"**{flagged['total']} kernel(s) on {flagged['workloads']} workload(s) were flagged for "
                     "review** and are in none of these figures: see Flagged for review.")
    return notes


def _summary_section(result, summary) -> str:
    headers = ["Method", "Compile rate", "Accuracy", "pass@1", "Fraction of roofline",
               "Loop speedup against it"]
    table = md_table(headers, _summary_rows(result, summary), right={1, 2, 3, 4, 5})
    return "## Summary\n\n" + table + "\n\n" + "\n\n".join(_summary_notes(result, summary))


SEED_COLUMNS = [("loop_accuracy", "Loop accuracy", fmt_pct, {"loop"}),
                ("speedup_vs_reference", "Loop vs reference", fmt_x, {"loop", "reference"}),
                ("speedup_vs_metaschedule", "Loop vs MetaSchedule", fmt_x, {"loop", "metaschedule"}),
                ("metaschedule_accuracy", "MetaSchedule accuracy", fmt_pct, {"metaschedule"})]


def _seed_section(result, summary) -> str:
    present = set(result.get("baselines") or [])
    cols = [c for c in SEED_COLUMNS if c[3] <= present]
    per_seed = summary.get("per_seed") or []
    if not cols or not per_seed:
        return ""
    def cell(s, key, fmt):
        n = s.get(key.replace("speedup_", "n_"))
        return fmt(s.get(key)) + (f" (n={n})" if key.startswith("speedup_") and n is not None else "")

    rows = [[s.get("seed")] + [cell(s, key, fmt) for key, _, fmt, _ in cols] for s in per_seed]
    table = md_table(["Seed"] + [c[1] for c in cols], rows, right=set(range(1, len(cols) + 1)))
    spans = []
    for key, label, fmt, _ in cols:
        vals = [s[key] for s in per_seed if s.get(key) is not None]
        if vals:
            spans.append(f"{label} {fmt(min(vals))} to {fmt(max(vals))}")
    line = f"Min to max across {len(per_seed)} seeds: " + ("; ".join(spans) or "no values") + "."
    return "## Variation across seeds\n\n" + table + "\n\n" + line


def _reference_cell(w) -> str:
    status = _reference_status(w)
    if status == "ok":
        return fmt_cycles(w.get("reference_cycles"))
    return "no reference" if status == "none" else status


def _workload_row(w, present, n_seeds) -> list:
    fastest = min((c for m in present if (c := cycles(w, m))), default=None)

    def cyc(m):
        c = cycles(w, m)
        if c is None:
            return "unsolved"
        return f"**{fmt_cycles(c)}**" if c == fastest and len(present) > 1 else fmt_cycles(c)

    row = [f"`{w.get('name')}`", w.get("category"), w.get("model"), fmt_cycles(w.get("roofline_cycles"))]
    if "reference" in present:
        row.append(cyc("reference") if _reference_status(w) == "ok" else _reference_cell(w))
    if "metaschedule" in present:
        row.append(cyc("metaschedule"))
    if "loop" in present:
        row.append(cyc("loop"))
        for base in ("reference", "metaschedule"):
            if base in present:
                row.append(fmt_x(ratio(cycles(w, base), cycles(w, "loop"))))
        row.append(fmt_pct(ratio(w.get("roofline_cycles"), cycles(w, "loop"))))
        row.append(f"{w.get('solved_seeds', 0)}/{n_seeds}")
    return row


def _workload_headers(present) -> list[str]:
    headers = ["Workload", "Category", "Model", "Roofline cycles"]
    headers += [f"{LABELS[m]} cycles" for m in METHODS if m in present]
    if "loop" in present:
        headers += [f"Loop vs {LABELS[b]}" for b in ("reference", "metaschedule") if b in present]
        headers += ["Loop fraction of roofline", "Solved seeds"]
    return headers


def _workload_section(result) -> str:
    present = [m for m in METHODS if m in (result.get("baselines") or [])]
    workloads = _sorted(result.get("workloads") or [])
    if not workloads:
        return "## Per workload\n\nNo workloads."
    n_seeds = len(_seeds(result)) or max(len(w.get("seeds") or []) for w in workloads)
    headers = _workload_headers(present)
    rows = [_workload_row(w, present, n_seeds) for w in workloads]
    note = "Cycles are the median over the seeds that solved the workload"
    note += "; the fastest kernel of each row is in bold." if len(present) > 1 else "."
    if "loop" in present and len(present) > 1:
        note += " Speedups are baseline cycles / loop cycles."
    return "## Per workload\n\n" + note + "\n\n" + md_table(headers, rows, right=set(range(3, len(headers))))


def baseline_wins(workloads, present) -> list[tuple[float, dict, str]]:
    """(loop speedup, workload, baseline) where the baseline is faster, worst first."""
    wins = [(r, w, b) for w in workloads for b in ("reference", "metaschedule") if b in present
            if (r := ratio(cycles(w, b), cycles(w, "loop"))) is not None and r < 1]
    return sorted(wins, key=lambda t: (t[0], t[1].get("name") or ""))


def loop_unsolved(workloads, present) -> list[tuple[dict, list[str]]]:
    """(workload, baselines that solved it) where the loop did not but a baseline did."""
    out = []
    for w in _sorted(workloads):
        solvers = [b for b in ("reference", "metaschedule") if b in present and cycles(w, b)]
        if cycles(w, "loop") is None and solvers:
            out.append((w, solvers))
    return out


def _wins_section(result) -> str:
    present = set(result.get("baselines") or [])
    head = "## Where the baselines win\n\n"
    if "loop" not in present:
        return head + "Not applicable: the loop was not run."
    if not present & {"reference", "metaschedule"}:
        return head + "Not applicable: no baseline was run."
    workloads = result.get("workloads") or []
    parts = []
    wins = baseline_wins(workloads, present)
    if wins:
        rows = [[f"`{w.get('name')}`", w.get("category"), LABELS[b], fmt_cycles(cycles(w, b)),
                 fmt_cycles(cycles(w, "loop")), fmt_x(r)] for r, w, b in wins]
        parts.append("Faster than the loop (worst first):\n\n" + md_table(
            ["Workload", "Category", "Baseline", "Baseline cycles", "Loop cycles", "Loop speedup"],
            rows, right={3, 4, 5}))
    else:
        parts.append("No baseline is faster than the loop on a workload the loop solved.")
    unsolved = loop_unsolved(workloads, present)
    if unsolved:
        rows = [[f"`{w.get('name')}`", w.get("category"),
                 ", ".join(f"{LABELS[b]} ({fmt_cycles(cycles(w, b))} cycles)" for b in solvers)]
                for w, solvers in unsolved]
        parts.append("Solved by a baseline but not by the loop:\n\n"
                     + md_table(["Workload", "Category", "Solved by"], rows))
    else:
        parts.append("The loop solved every workload a baseline solved.")
    return head + "\n\n".join(parts)


FLAGGED_HEADERS = ["Workload", "Method", "Seed", "Iteration", "Cycles", "Roofline cycles", "Reference cycles",
                   "Reason"]


def _flagged_section(result) -> str:
    head = "## Flagged for review\n\n"
    gate = result.get("gate")
    if not gate:
        return head + "Not checked: this result predates the gate."
    rule = (f"A kernel faster than its roofline (then the NPU model is wrong, not the kernel good) or more "
            f"than {gate['max_speedup']:g}x faster than the reference is no method's result: it is left out "
            "of every figure in this report and listed here for a person to look at.")
    flagged = [(w, f) for w in _sorted(result.get("workloads") or []) for f in w.get("flagged") or []]
    if not flagged:
        return head + rule + "\n\nNo kernel was flagged."
    rows = [[f"`{w.get('name')}`", LABELS.get(f.get("method"), f.get("method")), f.get("seed"),
             None if f.get("iteration") is None else f["iteration"] + 1, fmt_cycles(f.get("cycles")),
             fmt_cycles(f.get("roofline_cycles")), fmt_cycles(f.get("reference_cycles")), f.get("reason")]
            for w, f in flagged]
    parts = [rule, md_table(FLAGGED_HEADERS, rows, right={2, 3, 4, 5, 6})]
    programs: dict[tuple, list[dict]] = {}  # one listing per distinct kernel of a workload
    for w, f in flagged:
        if f.get("program"):
            programs.setdefault((w.get("name"), f["program"]), []).append(f)
    for (name, program), fs in programs.items():
        where = "; ".join(f"{LABELS.get(f.get('method'), f.get('method'))} seed {f.get('seed')}"
                          + ("" if f.get("iteration") is None else f", iteration {f['iteration'] + 1}")
                          for f in fs)
        fence = _fence(program)
        parts.append(f"<details><summary><code>{name}</code>: {where}</summary>\n\n"
                     f"{fence}python\n{program.rstrip()}\n{fence}\n\n</details>")
    return head + "\n\n".join(parts)


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text`` (proposed text is untrusted)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# name: (alt text, the sentence under the image, why it may be missing)
PLOT_TEXT = {
    "speedup.png": (
        "Loop speedup per workload",
        ("Loop speedup per workload against each baseline (baseline cycles / loop cycles, median "
         "over seeds, log scale): bars right of the 1x line are workloads where the loop is faster; "
         "a missing bar means one side has no correct kernel."),
        "it needs the loop and a baseline both solving some workload"),
    "accuracy_by_category.png": (
        "Accuracy by category",
        ("Per category, the share of workload-seed runs that produced a legal and correct kernel "
         "for each tuner that ran (Hawk loop, MetaSchedule), next to the share of workloads that "
         "have a reference kernel at all."),
        "it needs workloads and at least one method that ran"),
    "accuracy_vs_iterations.png": (
        "Accuracy against iterations",
        ("The share of loop runs that have a legal and correct kernel after each iteration "
         "(proposals and knowledge or exploration repairs alike count against the budget)."),
        "it is drawn for runs with knowledge"),
    "roofline.png": (
        "Fraction of roofline per workload",
        ("Per workload, the fraction of the roofline bound (roofline cycles / kernel cycles) each "
         "method reached; 100% would be the fastest the NPU model allows."),
        "no method has cycles on any workload"),
}


def _plots_section(plots: dict[str, Path | None]) -> str:
    parts = ["## Plots\n\nEvery plot is drawn from this result, produced by the command at the top."]
    for name, path in plots.items():
        alt, sentence, needs = PLOT_TEXT[name]
        if path is None:
            parts.append(f"`{name}` was not drawn: {needs}.")
        else:
            parts.append(f"{sentence}\n\n![{alt}]({name})")
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- plots

def _footer(result) -> str:
    """Provenance printed on every figure, so a PNG shared on its own still says what
    produced it."""
    p = result.get("provenance") or {}
    command = textwrap.wrap(p.get("command") or "", 120, break_on_hyphens=False)
    if len(command) > 3:  # the report holds the whole command; the figure only needs to identify it
        command = command[:3] + ["..."]
    commit = (p.get("commit") or "?")[:12] + ("+dirty" if p.get("dirty") else "")
    return "\n".join(command + [f"commit {commit} · {p.get('date', '')} · {p.get('machine', '')}"])


def _subtitle(result) -> str:
    p = result.get("provenance") or {}
    return f"{p.get('suite', '?')} on {p.get('target', '?')}, proposer {p.get('llm', '?')}"


def _save(fig, path: Path, result) -> Path:
    fig.text(0.0, -0.01, _footer(result), fontsize=7, color="#555555", va="top", ha="left",
             family="monospace", transform=fig.transFigure)
    fig.tight_layout()
    # bbox_inches="tight" keeps the outside legend, category labels and footer in the PNG.
    fig.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _category_bands(ax, rows: list[dict]):
    """Shade every other category and name it at the right edge: the bars are sorted by
    category, and this keeps ~50 rows readable without repeating the category per label."""
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i].get("category") != rows[start].get("category"):
            if len({r.get("category") for r in rows[:i]}) % 2 == 0:
                ax.axhspan(start - 0.5, i - 0.5, color="#f0f0f0", zorder=0)
            ax.text(1.01, (start + i - 1) / 2, rows[start].get("category") or "-",
                    transform=ax.get_yaxis_transform(), va="center", ha="left", fontsize=9,
                    color="#333333")
            start = i


def _hbar_axes(rows, per_row_in, title, result):
    import matplotlib.pyplot as plt

    height = 1.8 + per_row_in * len(rows)
    fig, ax = plt.subplots(figsize=(10, height))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r.get("name") or "-" for r in rows], fontsize=9)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # first workload at the top
    _category_bands(ax, rows)
    # The pad leaves room for the legend between the title and the axes (_top_legend).
    ax.set_title(f"{title}\n{_subtitle(result)}", fontsize=11, pad=26)
    ax.grid(axis="x", color="#dddddd", zorder=0)
    ax.set_axisbelow(True)
    return fig, ax


def _top_legend(ax, ncol: int):
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, frameon=False, fontsize=9,
              borderaxespad=0.3)


def _log_axis(ax, lo, hi, unit: str):
    """A log x-axis from lo to hi with plain tick labels ("0.5x", "10%"), thinned to keep
    them apart: 1-2-5 steps over a few decades, powers of ten beyond."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    decades = math.log10(hi / lo)
    mantissas = (1, 2, 5) if decades <= 3 else (1,)
    step = 1 if decades <= 8 else 2
    ticks = [m * 10.0 ** e for e in range(-9, 10, step) for m in mantissas if lo <= m * 10.0 ** e <= hi]
    scale = 100 if unit == "%" else 1
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v * scale:g}{unit}"))
    ax.xaxis.set_minor_locator(NullLocator())


def _padded_log_limits(values, pad: float = 0.12) -> tuple[float, float]:
    """Limits around ``values`` and 1, widened by ``pad`` of the log span on each side so
    the value labels at the bar ends stay inside the axes."""
    low, high = math.log10(min(values + [1.0])), math.log10(max(values + [1.0]))
    margin = pad * max(high - low, 0.3) + 0.05
    return 10 ** (low - margin), 10 ** (high + margin)


def _grouped_offsets(k: int, height: float = 0.8) -> tuple[list[float], float]:
    bar = height / k
    return [-height / 2 + bar * (i + 0.5) for i in range(k)], bar


def _bar_values(result, series, of):
    """{(workload, series): of(workload, series)}, the workloads with any value (sorted for
    plotting), and the values that exist."""
    workloads = result.get("workloads") or []
    value = {(w.get("name"), k): of(w, k) for w in workloads for k in series}
    rows = [w for w in _sorted(workloads) if any(value[(w.get("name"), k)] is not None for k in series)]
    return value, rows, [v for v in value.values() if v is not None]


def _plot_speedup(result, out: Path) -> Path | None:
    present = result.get("baselines") or []
    bases = [b for b in ("reference", "metaschedule") if b in present and "loop" in present]
    value, rows, vals = _bar_values(result, bases, lambda w, b: ratio(cycles(w, b), cycles(w, "loop")))
    if not rows:
        return None
    lo, hi = _padded_log_limits(vals)
    fig, ax = _hbar_axes(rows, 0.16 + 0.14 * len(bases), "Hawk loop speedup against each baseline", result)
    offsets, bar = _grouped_offsets(len(bases))
    for b, off in zip(bases, offsets):
        ys = [i + off for i, w in enumerate(rows) if value[(w.get("name"), b)] is not None]
        vs = [value[(w.get("name"), b)] for w in rows if value[(w.get("name"), b)] is not None]
        # Bars grow from the 1x line, so faster goes right and slower goes left.
        ax.barh(ys, [v - 1 for v in vs], left=1, height=bar, color=COLORS[b], label=f"vs {LABELS[b]}")
        for y, v in zip(ys, vs):
            ax.text(v * (1.03 if v >= 1 else 1 / 1.03), y, fmt_x(v), va="center",
                    ha="left" if v >= 1 else "right", fontsize=7)
    _log_axis(ax, lo, hi, "x")
    ax.axvline(1, color="black", linewidth=1)
    ax.set_xlabel("speedup = baseline cycles / loop cycles (log scale; > 1x: loop faster)")
    _top_legend(ax, len(bases))
    return _save(fig, out / "speedup.png", result)


def _category_accuracy(result) -> dict[str, dict[str, float | None]]:
    present = result.get("baselines") or []
    seeds = _seeds(result)
    by_cat: dict[str, list[dict]] = {}
    for w in _sorted(result.get("workloads") or []):
        by_cat.setdefault(w.get("category") or "-", []).append(w)
    table = {}
    for cat, ws in by_cat.items():
        row = {m: _fraction([_solved(r) for r in _runs(ws, seeds, m)])
               for m in ("loop", "metaschedule") if m in present}
        if "reference" in present:
            row["reference"] = _fraction([_reference_status(w) != "none" for w in ws])
        table[cat] = row
    return table


def _plot_accuracy(result, out: Path) -> Path | None:
    table = _category_accuracy(result)
    series = [m for m in ("loop", "metaschedule", "reference")
              if any(row.get(m) is not None for row in table.values())]
    if not table or not series:
        return None
    import matplotlib.pyplot as plt

    cats = list(table)
    counts = {c: sum(1 for w in result.get("workloads") or [] if (w.get("category") or "-") == c)
              for c in cats}
    labels = {"loop": "Hawk loop: legal and correct runs", "metaschedule": "MetaSchedule: legal and correct runs",
              "reference": "workloads with a reference kernel"}
    # tight_layout makes room for the legend on the right out of the figure width, so
    # add that width to what the bars need.
    axes_width = max(4.0, 0.28 * len(series) * len(cats) + 0.35 * len(cats))
    fig, ax = plt.subplots(figsize=(axes_width + 3.5, 4.8))
    offsets, bar = _grouped_offsets(len(series))
    for m, off in zip(series, offsets):
        xs = [i + off for i, c in enumerate(cats) if table[c].get(m) is not None]
        vs = [table[c][m] for c in cats if table[c].get(m) is not None]
        ax.bar(xs, [v * 100 for v in vs], width=bar, color=COLORS[m], label=labels[m],
               hatch="//" if m == "reference" else None, edgecolor="white")
        for x, v in zip(xs, vs):
            ax.text(x, v * 100 + 1, f"{v * 100:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels([f"{c}\n({counts[c]})" for c in cats], fontsize=9,
                       rotation=30 if len(cats) > 8 else 0)
    ax.set_ylim(0, 112)
    ax.set_yticks(range(0, 101, 20))
    ax.set_yticklabels([f"{t}%" for t in range(0, 101, 20)])
    ax.set_xlabel("category (number of workloads)")
    ax.set_ylabel("percent")
    ax.grid(axis="y", color="#dddddd")
    ax.set_axisbelow(True)
    ax.set_title(f"Accuracy by category over {len(_seeds(result))} seeds\n{_subtitle(result)}", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    return _save(fig, out / "accuracy_by_category.png", result)


def _plot_roofline(result, out: Path) -> Path | None:
    methods = [m for m in METHODS if m in (result.get("baselines") or [])]
    value, rows, vals = _bar_values(result, methods, lambda w, m: ratio(w.get("roofline_cycles"), cycles(w, m)))
    if not rows:
        return None
    fig, ax = _hbar_axes(rows, 0.16 + 0.12 * len(methods), "Fraction of the roofline bound reached", result)
    # Fractions span 1e-4..1: a linear axis hides everything below a few percent, so go
    # logarithmic as soon as some value is that small.
    top = max(1.0, max(vals))  # a kernel can beat an optimistic-enough roofline
    log = min(vals) < 0.05 * top
    lo = 10 ** math.floor(math.log10(min(vals))) if log else 0.0
    hi = top * (1.3 if log else 1.05)
    offsets, bar = _grouped_offsets(len(methods))
    for m, off in zip(methods, offsets):
        ys = [i + off for i, w in enumerate(rows) if value[(w.get("name"), m)] is not None]
        vs = [value[(w.get("name"), m)] for w in rows if value[(w.get("name"), m)] is not None]
        ax.barh(ys, [v - lo for v in vs], left=lo, height=bar, color=COLORS[m], label=LABELS[m])
    if log:
        _log_axis(ax, lo, hi, "%")
    else:
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlim(lo, hi)
    ax.axvline(1, color="black", linewidth=1)
    scale = "log scale" if log else "linear scale"
    ax.set_xlabel(f"roofline cycles / kernel cycles ({scale}; 100% = the roofline bound)")
    _top_legend(ax, len(methods))
    return _save(fig, out / "roofline.png", result)


def _knowledge_runs(result) -> list[dict]:
    return [s["loop"]["knowledge"] for w in result.get("workloads") or [] for s in w.get("seeds") or []
            if s.get("loop") and s["loop"].get("knowledge")]


def accuracy_curve(runs: list[dict], budget: int) -> list[float]:
    """Share of loop runs solved within the first i + 1 iterations, for i < budget."""
    curve = []
    for i in range(budget):
        solved = [r["solved_by_iteration"][min(i, len(r["solved_by_iteration"]) - 1)]
                  if r["solved_by_iteration"] else 0 for r in runs]
        curve.append(sum(solved) / len(runs) if runs else 0.0)
    return curve


def _plot_knowledge(result, out: Path) -> Path | None:
    runs = _knowledge_runs(result)
    if not runs:
        return None
    import matplotlib.pyplot as plt

    budget = (result.get("provenance") or {}).get("budget") or max(len(r["solved_by_iteration"]) for r in runs)
    curve = accuracy_curve(runs, budget)
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    ax.step(range(1, budget + 1), [v * 100 for v in curve], where="post", color=COLORS["loop"],
            label="Hawk loop with knowledge")
    ax.set_xlabel("iterations (proposals and repairs)")
    ax.set_ylabel("runs solved (legal and correct), %")
    ax.set_ylim(0, 105)
    ax.grid(color="#dddddd")
    mode = ((result.get("provenance") or {}).get("knowledge") or {}).get("mode", "")
    ax.set_title(f"Accuracy against iterations, knowledge {mode}\n{_subtitle(result)}", fontsize=11)
    ax.legend(loc="lower right", frameon=False, fontsize=9)
    return _save(fig, out / "accuracy_vs_iterations.png", result)


def _knowledge_section(result) -> str:
    runs = _knowledge_runs(result)
    if not runs:
        return ""
    prov = (result.get("provenance") or {}).get("knowledge") or {}
    by: dict[str, list[int]] = {}
    for r in runs:
        for origin, d in r["repairs"].items():
            t = by.setdefault(origin, [0, 0])
            t[0] += d["tried"]
            t[1] += d["results"]
    best = [r["best_origin"] for r in runs if r["best_origin"]]
    budget = (result.get("provenance") or {}).get("budget") or 30
    curve = accuracy_curve(runs, budget)
    rows = [["triples in the store at the end", max(r["store_triples"] for r in runs)],
            ["triples learned in this run", max(r["learned_so_far"] for r in runs)],
            ["retrievals", sum(r["retrievals"] for r in runs) and max(r["retrievals"] for r in runs)]]
    rows += [[f"repairs from {o}: tried / gave a correct kernel", f"{t[0]} / {t[1]}"] for o, t in sorted(by.items())]
    rows += [["best kernel came from", ", ".join(f"{o} {best.count(o)}" for o in sorted(set(best)))],
             ["accuracy at 10 iterations / at the budget", f"{fmt_pct(curve[min(9, budget - 1)])} / {fmt_pct(curve[-1])}"]]
    distilled = sum((Counter(r.get("distilled") or {}) for r in runs), Counter())  # each run counts its own
    if distilled:
        rows.append(["distillation: decisions taken", ", ".join(f"{k} {v}" for k, v in sorted(distilled.items()))])
    quality = next((r["effect_model"] for r in reversed(runs) if r.get("effect_model")), None)
    if quality and quality.get("auc") is not None:
        rows.append(["effect model on held-back applications: AUC, accuracy (majority)",
                     (f"{quality['auc']:.2f}, {fmt_pct(quality['accuracy'])} ({fmt_pct(quality['majority_accuracy'])}) "
                      f"over {quality['held_back']}")])
    if quality and quality.get("contexts"):
        rows.append(["held-back contexts where the first-ranked repair fixed it: 2D fusion / reranked by the model",
                     f"{quality['top_fixed_fused']} / {quality['top_fixed_model']} of {quality['contexts']}"])
    head = (f"## Knowledge\n\nMode {prov.get('mode', '?')}, ablation {prov.get('ablation', 'none')}; stores: "
            + ", ".join(f"seed {k}: `{v}`" for k, v in sorted((prov.get("stores") or {}).items())) + ".")
    return head + "\n\n" + md_table(["", "value"], rows, right={1})


PLOTTERS = {"speedup.png": _plot_speedup, "accuracy_by_category.png": _plot_accuracy,
            "roofline.png": _plot_roofline, "accuracy_vs_iterations.png": _plot_knowledge}


def write_plots(result: dict, out_dir: Path) -> dict[str, Path | None]:
    """Draw every plot into ``out_dir``; a plot without data is None and its old file is
    removed, so the directory never shows a stale plot from an earlier run."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; set before pyplot is first imported
    plots = {}
    for name, plot in PLOTTERS.items():
        plots[name] = plot(result, out_dir)
        if plots[name] is None:
            (out_dir / name).unlink(missing_ok=True)
    return plots


def render_markdown(result: dict, plots: dict[str, Path | None]) -> str:
    summary = result.get("summary") or summarize(result.get("workloads") or [],
                                                 result.get("baselines") or [], _seeds(result))
    sections = [_title(result), _provenance(result), _summary_section(result, summary),
                _seed_section(result, summary), _knowledge_section(result), _workload_section(result),
                _flagged_section(result), _wins_section(result), _plots_section(plots)]
    return "\n\n".join(s for s in sections if s) + "\n"


def write_report(result: dict, out_dir) -> Path:
    """Render a ``hawk bench`` result into ``out_dir/report.md`` and PNG plots beside it;
    returns the path of report.md. A result without ``summary`` gets one computed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(result, out)
    path = out / "report.md"
    path.write_text(render_markdown(result, plots), encoding="utf-8")
    return path
