"""Built-in workload suites; each is a workload file beside this module."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ...ir import Workload, WorkloadError, load_workloads

_cache: dict[str, list[Workload]] = {}


def suite_names() -> list[str]:
    files = resources.files(__name__).iterdir()
    return sorted(f.name[:-3] for f in files if f.name.endswith(".py") and not f.name.startswith("_"))


def load_suite(suite: str | Path) -> list[Workload]:
    """A built-in suite by name, or a workload file by path."""
    name = str(suite)
    if name in suite_names():
        if name not in _cache:
            _cache[name] = load_workloads(Path(str(resources.files(__name__).joinpath(f"{name}.py"))))
        return _cache[name]
    if Path(name).is_file():
        return load_workloads(name)
    raise WorkloadError(f"unknown suite {name!r}: not built in ({', '.join(suite_names())}) nor a file")


def find_workload(name: str, suite: str | None = None) -> Workload:
    """A workload by name (from ``suite`` or any built-in suite), or from a file path."""
    if suite is None and Path(name).is_file():
        found = load_workloads(name)
        if len(found) != 1:
            raise WorkloadError(f"{name}: holds {len(found)} workloads; pass --suite FILE and a name")
        return found[0]
    for s in [suite] if suite else suite_names():
        for w in load_suite(s):
            if w.name == name:
                return w
    where = f"suite {suite}" if suite else "any built-in suite"
    raise WorkloadError(f"no workload named {name!r} in {where}")
