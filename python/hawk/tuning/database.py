"""MetaSchedule databases, used safely.

A ``JSONDatabase`` directory holds two line files: workloads (structural hash, module) and
tuning records (workload index, record). Two hazards of sharing it, both met here:

- processes that commit to one directory at once each number workloads from their own
  count, so records silently point at another process's workload. Never share one:
  each process writes its own part (``part_dir``) and parts are merged into the shared
  directory under an exclusive file lock (``merge``), written to temporary files and
  moved into place, so a reader never sees half a file;
- one unreadable line makes ``JSONDatabase`` refuse the whole directory. ``load`` reads
  line by line and skips what does not load (a truncated line, a foreign module, a record
  whose trace does not apply), with a warning naming the file and line.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import warnings
from pathlib import Path

import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

WORKLOADS, RECORDS = "database_workload.json", "database_tuning_record.json"
LOCK = ".hawk-database.lock"


class DatabaseWarning(UserWarning):
    """A line of a database that was skipped."""


def load(path: str | Path) -> tuple[ms.database.MemoryDatabase, int]:
    """The records of a JSONDatabase directory that load, in a MemoryDatabase, and how many
    lines were skipped (each with a ``DatabaseWarning``). A missing directory is empty."""
    db = ms.database.MemoryDatabase()
    workloads, records, skipped = _read(Path(path))
    committed: dict[int, object] = {}
    for wl, rec in records:
        if wl not in committed:
            committed[wl] = db.commit_workload(workloads[wl].mod)
        db.commit_tuning_record(ms.database.TuningRecord.from_json(rec, committed[wl]))
    return db, skipped


def _read(path: Path, *, replay: bool = True) -> tuple[list, list, int]:
    """(workloads, [(workload index, record json)], lines skipped): only what loads
    (``replay``: and whose trace still applies to its workload -- once per record is
    enough, so the merged database is not replayed again on every merge)."""
    workloads: list = []
    index_of: dict[int, int] = {}  # line number in the file -> index into workloads
    skipped = 0
    for n, line in _lines(path / WORKLOADS):
        try:
            wl = ms.database.Workload.from_json(json.loads(line))
        except Exception as err:  # noqa: BLE001 - a bad line is skipped, not fatal
            skipped += _warn(path / WORKLOADS, n, err)
            continue
        index_of[n] = len(workloads)
        workloads.append(wl)
    records = []
    for n, line in _lines(path / RECORDS):
        try:
            wl_line, rec = json.loads(line)
            wl = workloads[index_of[wl_line]]
            record = ms.database.TuningRecord.from_json(rec, wl)
            if replay:
                record.trace.apply_to_schedule(tvm.s_tir.Schedule(wl.mod), remove_postproc=False)
        except Exception as err:  # noqa: BLE001
            skipped += _warn(path / RECORDS, n, err)
            continue
        records.append((index_of[wl_line], rec))
    return workloads, records, skipped


def _lines(path: Path):
    """(line number from 0, text) of the non-empty lines of a file, if it exists."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f):
            if line.strip():
                yield n, line


def _warn(path: Path, n: int, err: Exception) -> int:
    warnings.warn(f"{path}:{n + 1}: skipped ({type(err).__name__}: {str(err).strip()[:120]})",
                  DatabaseWarning, stacklevel=3)
    return 1


def part_dir(root: str | Path, name: str) -> Path:
    """A directory of its own for one process's database under ``root``."""
    d = Path(root) / "parts" / f"{name}-{os.getpid()}"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def locked(root: str | Path):
    """An exclusive lock on a database directory, across processes."""
    Path(root).mkdir(parents=True, exist_ok=True)
    with open(Path(root) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def merge(root: str | Path, parts: list[str | Path]) -> int:
    """Add the records of ``parts`` to the database in ``root``, under its lock; returns the
    number of records added. Workloads are matched by structure, so indices stay right."""
    root = Path(root)
    with locked(root):
        workloads, records, _ = _read(root, replay=False)
        keys = [_key(w.mod) for w in workloads]
        seen = {(i, json.dumps(rec, sort_keys=True)) for i, rec in records}
        added = 0
        for part in parts:
            theirs, their_records, _ = _read(Path(part))
            for wl_index, rec in their_records:
                key = _key(theirs[wl_index].mod)
                if key not in keys:
                    keys.append(key)
                    workloads.append(theirs[wl_index])
                mine = keys.index(key)
                item = (mine, json.dumps(rec, sort_keys=True))
                if item not in seen:
                    seen.add(item)
                    records.append((mine, rec))
                    added += 1
        _write(root / WORKLOADS, [json.dumps(w.as_json()) for w in workloads])
        _write(root / RECORDS, [json.dumps([i, rec]) for i, rec in records])
    return added


def _key(mod) -> tuple:
    return (tvm_ffi.structural_hash(mod), tvm.ir.save_json(mod))


def _write(path: Path, lines: list[str]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
