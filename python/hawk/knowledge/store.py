"""The knowledge store: SQLite in WAL mode, safe for several tuning processes at once.

A store file is recognised by SQLite's ``application_id`` and versioned by its
``user_version``; an older store is migrated in one transaction, a newer, foreign,
truncated or corrupt one is refused with a clear ``StoreError`` and never written to.
Triples are stored as validated JSON (no pickle anywhere); every write is one ``BEGIN
IMMEDIATE`` transaction, so a writer killed in the middle loses at most what it was
writing. A write that cannot be made (a full disk, a read-only file or directory) is a
``StoreError`` naming the path and the cause, and what was committed before stays. Every
application of a triple is logged with its effect (the evidence distillation judges by).

Export and import are JSON files (``{"format": "hawk-knowledge", ...}``). Imported triples
arrive unverified: they have not worked on this runtime model yet.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from .triple import ACTIVE, Triple, TripleError

APPLICATION_ID = 0x48574B31  # "HWK1"
SCHEMA_VERSION = 3
EXPORT_FORMAT = "hawk-knowledge"
BUSY_TIMEOUT_S = 30.0
WAL_HEADER_BYTES = 32
MAX_PAGE_BYTES = 65536

# Migrations: MIGRATIONS[v] takes a store from version v to v + 1.
MIGRATIONS = (
    """CREATE TABLE triples (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        status TEXT NOT NULL,
        verified INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX triples_status ON triples(status);""",
    """CREATE TABLE applications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        triple_id TEXT NOT NULL,
        run TEXT NOT NULL,
        workload TEXT NOT NULL,
        target TEXT NOT NULL,
        iteration INTEGER NOT NULL,
        applied INTEGER NOT NULL,
        fixed INTEGER NOT NULL,
        correct INTEGER NOT NULL,
        cycles_before INTEGER,
        cycles_after INTEGER,
        new_faults TEXT NOT NULL,
        detail TEXT NOT NULL,
        created REAL NOT NULL
    );
    CREATE INDEX applications_triple ON applications(triple_id);""",
    # v3: what distillation judges by -- each application's context and retrieval scores,
    # the record of every prune, merge and rewrite (reversible), and the effect model
    """ALTER TABLE applications ADD COLUMN features TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE applications ADD COLUMN scores TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        created REAL NOT NULL,
        action TEXT NOT NULL,
        triples TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        reason TEXT NOT NULL,
        arbiter TEXT NOT NULL,
        reverted INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        format TEXT NOT NULL,
        body BLOB NOT NULL,
        meta TEXT NOT NULL,
        created REAL NOT NULL
    );""",
)
assert len(MIGRATIONS) == SCHEMA_VERSION


class StoreError(Exception):
    """A store that cannot be used (corrupt, foreign, newer, unwritable): nothing was changed."""


@dataclass(frozen=True)
class Application:
    """One use of a triple and what it did."""

    triple_id: str
    run: str
    workload: str
    target: str
    iteration: int
    applied: bool  # the rewrite changed the program (False: it did not fit this program)
    fixed: bool  # the trigger is gone (fault gone, or faster) and the result correct
    correct: bool
    cycles_before: int | None = None
    cycles_after: int | None = None
    new_faults: tuple[str, ...] = ()
    detail: str = ""
    features: dict = field(default_factory=dict)  # the context it was applied in (semantic vector)
    scores: dict = field(default_factory=dict)  # its retrieval scores then (fused, rank per axis)


class KnowledgeStore:
    """Triples and their application log in one SQLite file (``path``; created if absent)."""

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.skipped: list[str] = []  # why rows were left out of the last listing
        if readonly and not self.path.exists():
            raise StoreError(f"{self.path}: no such knowledge store")
        if not readonly:  # named now: SQLite says only "unable to open", or "readonly" at the first write
            unwritable = self._unwritable()
            if unwritable:
                raise StoreError(f"{self.path}: cannot write: {unwritable}")
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                           isolation_level=None)
            else:
                self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot open the knowledge store: {err}") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.OperationalError as err:  # the file is there but cannot be used (permissions, locks)
            why = self._unwritable()
            raise StoreError(f"{self.path}: cannot open: {err}{f'; {why}' if why else ''}") from None
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: not a knowledge store, or a damaged one ({err}); "
                             "the file was left as it is") from None
        if app_id == 0 and tables == 0 and version == 0:
            if self.readonly:
                raise StoreError(f"{self.path}: an empty file, not a knowledge store")
        elif app_id != APPLICATION_ID:
            raise StoreError(f"{self.path}: an SQLite file of another application (application_id {app_id:#x}), "
                             "not a knowledge store; the file was left as it is")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer Hawk (store schema {version}, this Hawk reads up to "
                             f"{SCHEMA_VERSION}); the file was left as it is")
        if app_id == APPLICATION_ID:
            damage = self._damage()
            if damage:
                raise StoreError(f"{self.path}: a damaged knowledge store ({damage}); the file was left as it is")
        if not self.readonly:
            self._pragma("journal_mode=WAL")
            self._pragma("synchronous=NORMAL")
            if version < SCHEMA_VERSION:
                self._migrate()
        elif version < SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema {version} must be migrated to {SCHEMA_VERSION}; "
                             "open it once without read-only")

    def _unwritable(self) -> str | None:
        """Why this process cannot write the store, or None."""
        folder = self.path.parent
        if not folder.is_dir():
            return f"no directory {folder}"
        if not os.access(folder, os.W_OK):
            return f"the directory {folder} is not writable (SQLite keeps its -wal and -shm files beside the store)"
        if self.path.exists() and not os.access(self.path, os.W_OK):
            return "the file is not writable (it can still be opened read-only)"
        return None

    def _damage(self) -> str | None:
        """What is wrong with a knowledge store's file, or None: checked before anything is written to it."""
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        size = self.path.stat().st_size
        wal = Path(f"{self.path}-wal")
        # SQLite writes whole pages; a partial last page with no log to recover from was cut off
        if size % page and not (wal.exists() and wal.stat().st_size > WAL_HEADER_BYTES):
            return f"cut short: {size} bytes is not a whole number of {page}-byte pages"
        try:
            found = self._db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as err:
            return str(err)
        return None if found == "ok" else found.removeprefix("*** in database main ***\n").splitlines()[0]

    def _pragma(self, setting: str) -> None:
        try:
            self._db.execute(f"PRAGMA {setting}")
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot set {setting}: {err}") from None

    def _migrate(self) -> None:
        with self._write():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction; StoreError naming the cause if it does not commit (nothing of it is kept)."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only")
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite has already rolled back after some errors (a full disk)
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot write: {self._cause(err)}") from None

    def _cause(self, err: sqlite3.Error) -> str:
        """SQLite's message, and the file size limit when that is what stopped a write: SQLite
        reports it only as an I/O error (a full disk it names itself)."""
        code = getattr(err, "sqlite_errorname", None) or ""  # none on the sqlite3 module's own errors
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if not code.startswith("SQLITE_IOERR") or limit == resource.RLIM_INFINITY:
            return str(err)
        files = (self.path, Path(f"{self.path}-wal"))
        largest = max((f.stat().st_size for f in files if f.exists()), default=0)
        if largest + MAX_PAGE_BYTES <= limit:  # room for another page: something else went wrong
            return str(err)
        return f"{err}: its files reached this process's file size limit of {limit} bytes (ulimit -f)"

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- triples ---------------------------------------------------------------------------

    def add(self, triple: Triple) -> bool:
        """Store a triple; False if one with its id is already there (it is left unchanged)."""
        body = json.dumps(triple.to_dict(), sort_keys=True)
        with self._write() as db:
            cur = db.execute("INSERT OR IGNORE INTO triples (id, created, status, verified, body) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (triple.id, time.time(), triple.stats.status, int(triple.stats.verified), body))
            return cur.rowcount == 1

    def put(self, triple: Triple) -> None:
        """Replace a stored triple (its stats or status changed)."""
        body = json.dumps(triple.to_dict(), sort_keys=True)
        with self._write() as db:
            db.execute("UPDATE triples SET status = ?, verified = ?, body = ? WHERE id = ?",
                       (triple.stats.status, int(triple.stats.verified), body, triple.id))

    def get(self, triple_id: str) -> Triple | None:
        row = self._query("SELECT id, body FROM triples WHERE id = ?", (triple_id,))
        return self._decode(row[0]) if row else None

    def triples(self, *, status: str | None = ACTIVE) -> list[Triple]:
        """Stored triples in the order they were learned (``status=None``: all of them).

        A row that does not decode is skipped with its reason in ``self.skipped``."""
        if status is None:
            rows = self._query("SELECT id, body FROM triples ORDER BY created, id")
        else:
            rows = self._query("SELECT id, body FROM triples WHERE status = ? ORDER BY created, id", (status,))
        self.skipped = []
        out = []
        for row in rows:
            try:
                out.append(self._decode(row))
            except StoreError as err:
                self.skipped.append(str(err))
        return out

    def __len__(self) -> int:
        return self._query("SELECT count(*) FROM triples")[0][0]

    def _decode(self, row) -> Triple:
        tid, body = row
        try:
            triple = Triple.from_dict(json.loads(body))
        except (ValueError, TripleError) as err:
            raise StoreError(f"{self.path}: triple {tid} is damaged: {err}") from None
        if triple.id != tid:
            raise StoreError(f"{self.path}: triple {tid} holds the body of {triple.id}")
        return triple

    def _query(self, sql: str, args: tuple = ()) -> list:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: cannot read: {err}") from None

    # --- evidence ----------------------------------------------------------------------------

    def record(self, app: Application) -> Triple | None:
        """Log one application and fold it into the triple's stats, in one transaction."""
        with self._write() as db:
            db.execute(
                "INSERT INTO applications (triple_id, run, workload, target, iteration, applied, fixed, correct, "
                "cycles_before, cycles_after, new_faults, detail, created, features, scores) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (app.triple_id, app.run, app.workload, app.target, app.iteration, int(app.applied),
                 int(app.fixed), int(app.correct), app.cycles_before, app.cycles_after,
                 json.dumps(list(app.new_faults)), app.detail[:2000], time.time(),
                 json.dumps(_numbers(app.features), sort_keys=True), json.dumps(_numbers(app.scores), sort_keys=True)))
            row = db.execute("SELECT id, body FROM triples WHERE id = ?", (app.triple_id,)).fetchone()
            if row is None or not app.applied:
                return None
            triple = self._decode(row)
            st = triple.stats
            changes = {"applications": st.applications + 1, "successes": st.successes + int(app.fixed),
                       "failed_in_a_row": 0 if app.fixed else st.failed_in_a_row + 1}
            if app.fixed:
                changes["verified"] = True
                if app.cycles_before and app.cycles_after:
                    changes["cycle_log_sum"] = st.cycle_log_sum + math.log(app.cycles_after / app.cycles_before)
                    changes["cycle_n"] = st.cycle_n + 1
            triple = triple.with_stats(**changes)
            db.execute("UPDATE triples SET verified = ?, body = ? WHERE id = ?",
                       (int(triple.stats.verified), json.dumps(triple.to_dict(), sort_keys=True), triple.id))
            return triple

    def applications(self, triple_id: str | None = None) -> list[dict]:
        cols = ("seq", "triple_id", "run", "workload", "target", "iteration", "applied", "fixed", "correct",
                "cycles_before", "cycles_after", "new_faults", "detail", "features", "scores")
        sql = f"SELECT {', '.join(cols)} FROM applications"
        rows = self._query(sql + " WHERE triple_id = ? ORDER BY seq", (triple_id,)) if triple_id else \
            self._query(sql + " ORDER BY seq")
        out = []
        for row in rows:
            d = dict(zip(cols, row))
            for k in ("applied", "fixed", "correct"):
                d[k] = bool(d[k])
            for k in ("new_faults", "features", "scores"):
                d[k] = json.loads(d[k])
            out.append(d)
        return out

    # --- history (distillation) ---------------------------------------------------------------

    def record_history(self, action: str, before: list[Triple], after: list[Triple], reason: str, arbiter: str,
                       *, reverts: int | None = None) -> int:
        """Write ``after`` over the stored triples and record the change, in one transaction;
        returns the entry's number. ``reverts`` marks an earlier entry as reverted."""
        with self._write() as db:
            for t in after:
                db.execute("UPDATE triples SET status = ?, verified = ?, body = ? WHERE id = ?",
                           (t.stats.status, int(t.stats.verified), json.dumps(t.to_dict(), sort_keys=True), t.id))
            cur = db.execute(
                "INSERT INTO history (created, action, triples, before, after, reason, arbiter) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (time.time(), action, json.dumps([t.id for t in after]),
                 json.dumps([t.to_dict() for t in before], sort_keys=True),
                 json.dumps([t.to_dict() for t in after], sort_keys=True), reason[:1000], arbiter))
            if reverts is not None:
                db.execute("UPDATE history SET reverted = 1 WHERE seq = ?", (reverts,))
            return int(cur.lastrowid)

    def history(self, seq: int | None = None) -> list[dict]:
        """Every distillation entry in order (``seq``: that one only)."""
        cols = ("seq", "created", "action", "triples", "before", "after", "reason", "arbiter", "reverted")
        sql = f"SELECT {', '.join(cols)} FROM history"
        rows = self._query(sql + " WHERE seq = ?", (seq,)) if seq is not None else self._query(sql + " ORDER BY seq")
        out = []
        for r in rows:
            d = dict(zip(cols, r))
            try:
                for k in ("triples", "before", "after"):
                    d[k] = json.loads(d[k])
            except ValueError as err:
                raise StoreError(f"{self.path}: history entry {d['seq']} is damaged: {err}") from None
            d["reverted"] = bool(d["reverted"])
            out.append(d)
        return out

    def history_entry(self, seq: int) -> dict | None:
        found = self.history(seq)
        return found[0] if found else None

    def application_count(self) -> int:
        return self._query("SELECT count(*) FROM applications WHERE applied = 1")[0][0]

    # --- models --------------------------------------------------------------------------------

    def save_model(self, name: str, body: bytes, meta: dict, fmt: str = "xgboost-json") -> None:
        """Store a model in its own serialisation (XGBoost JSON: no pickle), replacing the last."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO models (name, format, body, meta, created) VALUES (?, ?, ?, ?, ?)",
                       (name, fmt, sqlite3.Binary(body), json.dumps(meta, sort_keys=True), time.time()))

    def model(self, name: str) -> tuple[bytes, dict] | None:
        """(body, meta) of a stored model, or None."""
        rows = self._query("SELECT format, body, meta FROM models WHERE name = ?", (name,))
        if not rows:
            return None
        fmt, body, meta = rows[0]
        try:
            return bytes(body), {"format": fmt, **json.loads(meta)}
        except ValueError as err:
            raise StoreError(f"{self.path}: model {name} is damaged: {err}") from None

    # --- summary, export, import ---------------------------------------------------------------

    def stats(self) -> dict:
        triples = self.triples(status=None)
        apps = self._query("SELECT count(*), coalesce(sum(applied), 0), coalesce(sum(fixed), 0) FROM applications")[0]
        by = {}
        for t in triples:
            by.setdefault(t.stats.status, 0)
            by[t.stats.status] += 1
        active = [t for t in triples if t.stats.status == ACTIVE]
        count = {}
        for t in active:
            key = t.context.code or t.context.pipe
            count[key] = count.get(key, 0) + 1
        return {
            "path": str(self.path), "schema": SCHEMA_VERSION, "triples": len(triples), "by_status": by,
            "verified": sum(t.stats.verified for t in active), "unverified": sum(not t.stats.verified for t in active),
            "by_trigger": dict(sorted(count.items())),
            "by_rewrite": _count(t.executable.rewrite for t in active),
            "runs": len({t.provenance.run for t in triples}),
            "applications": apps[0], "applied": apps[1], "fixed": apps[2],
            "skipped": len(self.skipped),
            "distillation": _count(h["action"] for h in self.history()),
            "effect_model": _model_summary(self.model("effect.fix")),
        }

    def export(self, path: str | Path) -> int:
        """Write every triple and the application log as JSON (atomically); returns the triple count."""
        triples = self.triples(status=None)
        doc = {"format": EXPORT_FORMAT, "schema": SCHEMA_VERSION, "triples": [t.to_dict() for t in triples],
               "applications": self.applications()}
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            os.replace(tmp, path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"{path}: cannot write the export: {err}") from None
        return len(triples)

    def import_file(self, path: str | Path) -> tuple[int, int]:
        """Add the triples of an export file, unverified; returns (added, already present).

        The whole file is validated before anything is written."""
        triples = read_export(path)
        added = 0
        for t in triples:
            imported = t.with_stats(verified=False, applications=0, successes=0, cycle_log_sum=0.0, cycle_n=0,
                                    failed_in_a_row=0)
            added += self.add(imported)
        return added, len(triples) - added


def read_export(path: str | Path) -> list[Triple]:
    """The triples of an export file, every one validated (StoreError naming the first problem)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise StoreError(f"{path}: cannot read: {err}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != EXPORT_FORMAT:
        raise StoreError(f"{path}: not a Hawk knowledge export (no \"format\": \"{EXPORT_FORMAT}\")")
    schema = doc.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA_VERSION:
        raise StoreError(f"{path}: export schema {schema!r}; this Hawk reads up to {SCHEMA_VERSION}")
    items = doc.get("triples")
    if not isinstance(items, list):
        raise StoreError(f"{path}: \"triples\" must be a list")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(Triple.from_dict(item))
        except TripleError as err:
            raise StoreError(f"{path}: triples[{i}]: {err}") from None
    return out


def _model_summary(found) -> dict | None:
    """What ``kb stats`` says of the effect model: its evidence and measured quality."""
    if found is None:
        return None
    return {k: v for k, v in found[1].items() if k != "names"}


def _numbers(d: dict) -> dict[str, float]:
    """Only finite numbers under string keys reach the log."""
    return {str(k): float(v) for k, v in d.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))
