"""Workload files: a Python file defining WORKLOADS, or a TVMScript file with a header.

Python format (TE)::

    from tvm import te
    from hawk.ir import from_te
    A = te.placeholder((64, 64), "float32", name="A")
    B = te.compute((64, 64), lambda i, j: A[i, j] * 2, name="B")
    WORKLOADS = [from_te("double", "elementwise", [A, B], reference=lambda a: a * 2)]

TVMScript format (suffix ``.tvmscript``): one ``@T.prim_func`` and a header line
``# hawk-workload: name=NAME category=CATEGORY [outputs=N] [model=MODEL] [op=OP]``.
Its reference is the unscheduled function built for the host.

Workload files are the user's own code and run in-process like a config file; text
written by an LLM never goes through here.
"""

from __future__ import annotations

import runpy
from pathlib import Path

from tvm import tirx

from .workload import Workload, WorkloadError

HEADER = "# hawk-workload:"


def load_workloads(path: str | Path) -> list[Workload]:
    path = Path(path)
    if not path.is_file():
        raise WorkloadError(f"{path}: no such workload file")
    if path.suffix == ".tvmscript":
        return [_load_tvmscript(path)]
    if path.suffix != ".py":
        raise WorkloadError(f"{path}: a workload file is a .py (TE) or .tvmscript file")
    try:
        namespace = runpy.run_path(str(path), run_name=f"hawk_workloads_{path.stem}")
    except WorkloadError as err:
        raise WorkloadError(f"{path}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's file failed; say where
        raise WorkloadError(f"{path}: failed to load: {type(err).__name__}: {err}") from None
    found = namespace.get("WORKLOADS")
    if not isinstance(found, (list, tuple)) or not found:
        raise WorkloadError(f"{path}: must define WORKLOADS, a non-empty list of hawk.ir.Workload")
    out = []
    for i, w in enumerate(found):
        if not isinstance(w, Workload):
            raise WorkloadError(f"{path}: WORKLOADS[{i}] is a {type(w).__name__}, not a Workload")
        out.append(_with_source(w, path))
    names = [w.name for w in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise WorkloadError(f"{path}: workload name {dup!r} appears twice")
    return out


def _with_source(w: Workload, path: Path) -> Workload:
    import dataclasses

    return dataclasses.replace(w, source=str(path))


def _load_tvmscript(path: Path) -> Workload:
    from tvm.script import from_source

    text = path.read_text()
    header = next((ln for ln in text.splitlines() if ln.startswith(HEADER)), None)
    if header is None:
        raise WorkloadError(f"{path}: missing header line '{HEADER} name=... category=...'")
    fields = {}
    for item in header[len(HEADER):].split():
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "category", "outputs", "model", "op"):
            raise WorkloadError(f"{path}: bad header item {item!r} (name, category, outputs, model, op)")
        fields[key] = value
    for key in ("name", "category"):
        if key not in fields:
            raise WorkloadError(f"{path}: header lacks {key}=")
    # The parser takes no imports; the usual `from tvm.script import ...` line is implied.
    source = "\n".join(
        "#" + ln if ln.startswith(("from tvm.script import", "import tvm")) else ln for ln in text.splitlines()
    )
    try:
        parsed = from_source(source)
    except Exception as err:  # noqa: BLE001
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        first = next((ln for ln in lines if ln.lower().startswith("error")), lines[0] if lines else str(err))
        raise WorkloadError(f"{path}: not valid TVMScript: {first}") from None
    if not isinstance(parsed, tirx.PrimFunc):
        funcs = [f for _, f in getattr(parsed, "functions", {}).items() if isinstance(f, tirx.PrimFunc)]
        if len(funcs) != 1:
            raise WorkloadError(f"{path}: expected exactly one prim_func")
        parsed = funcs[0]
    try:
        outputs = int(fields.get("outputs", "1"))
    except ValueError:
        raise WorkloadError(f"{path}: outputs= must be an integer") from None
    return Workload(name=fields["name"], category=fields["category"], func=parsed,
                    op=fields.get("op", fields["name"]), model=fields.get("model", ""),
                    n_outputs=outputs, source=str(path))
