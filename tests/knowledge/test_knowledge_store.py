import json
import multiprocessing
import os
import re
import resource
import signal
import sqlite3
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hawk.knowledge import (
    Application,
    Context,
    Executable,
    KnowledgeStore,
    Provenance,
    Semantics,
    StoreError,
    Triple,
    TripleError,
    read_export,
)
from hawk.knowledge import store as store_mod


def make_triple(i: int = 0, run: str = "run-a") -> Triple:
    ctx = Context(trigger="fault", code="SCOPE_OVERFLOW", pipe="MTE2", fields={"scope": "global.npu.ub"},
                  category="elementwise", features={"fp:global.npu.ub": 17.0}, tokens=("split", "cache_read"))
    sem = Semantics("global.npu.ub holds 196608 bytes; the tile asked for 262144.",
                    {"bytes": 262144, "capacity": 196608})
    exe = Executable("fit_tiles", {"scope": "global.npu.ub", "capacity": 196608}, "fault_gone", "-a\n+b")
    prov = Provenance(run=run, workload=f"w{i}", target="davinci-like", iteration=i, source="explore",
                      proposer="offline", before="a", after="b", created="2026-12-03T00:00:00Z")
    return Triple.new(ctx, sem, exe, prov)


def test_round_trip_through_json():
    t = make_triple()
    again = Triple.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again == t
    assert t.executable.call() == 'fit_tiles(capacity=196608, scope="global.npu.ub")'


@pytest.mark.parametrize("path, value, where", [
    (("context", "trigger"), "rumour", "context.trigger"),
    (("stats", "successes"), 5, "stats.successes"),
    (("provenance", "iteration"), -1, "provenance.iteration"),
    (("context", "features"), {"x": float("nan")}, "context.features"),
    (("semantics", "text"), "", "semantics.text"),
    (("executable", "check"), "vibes", "executable.check"),
])
def test_from_dict_names_the_bad_field(path, value, where):
    d = make_triple().to_dict()
    d[path[0]][path[1]] = value
    with pytest.raises(TripleError, match=where.replace(".", r"\.")):
        Triple.from_dict(d)


def test_add_get_list_and_duplicates(tmp_path):
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        assert kb.add(make_triple(0)) and kb.add(make_triple(1))
        assert not kb.add(make_triple(0))  # same id: left as it is
        assert len(kb) == 2
        assert [t.provenance.workload for t in kb.triples()] == ["w0", "w1"]
        assert kb.get(make_triple(1).id) == make_triple(1)
        assert kb.get("nope") is None
        assert kb._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_record_folds_evidence_into_stats(tmp_path):
    t = make_triple()
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(t)
        kb.record(Application(t.id, "r", "w", "davinci-like", 3, applied=True, fixed=True, correct=True,
                              cycles_before=200, cycles_after=100))
        kb.record(Application(t.id, "r", "w", "davinci-like", 4, applied=True, fixed=False, correct=True,
                              new_faults=("ILLEGAL_PATH",)))
        kb.record(Application(t.id, "r", "w", "davinci-like", 5, applied=False, fixed=False, correct=False))
        st = kb.get(t.id).stats
        assert (st.applications, st.successes, st.verified) == (2, 1, True)
        assert st.cycle_ratio == pytest.approx(0.5)
        log = kb.applications(t.id)
        assert [a["iteration"] for a in log] == [3, 4, 5] and log[1]["new_faults"] == ["ILLEGAL_PATH"]
        assert kb.stats()["applications"] == 3


def test_export_import_marks_unverified(tmp_path):
    t = make_triple().with_stats(verified=True, applications=4, successes=4)
    with KnowledgeStore(tmp_path / "a.sqlite") as a:
        a.add(t)
        assert a.export(tmp_path / "kb.json") == 1
    with KnowledgeStore(tmp_path / "b.sqlite") as b:
        assert b.import_file(tmp_path / "kb.json") == (1, 0)
        assert b.import_file(tmp_path / "kb.json") == (0, 1)
        got = b.get(t.id)
        assert not got.stats.verified and got.stats.applications == 0
        assert got.provenance == t.provenance


def test_bad_export_files_are_refused_before_anything_is_written(tmp_path):
    good = make_triple().to_dict()
    bad = make_triple(1).to_dict()
    bad["context"]["trigger"] = "?"
    cases = {
        "garbage.json": b"\x00\xff not json",
        "foreign.json": json.dumps({"format": "other", "triples": []}).encode(),
        "newer.json": json.dumps({"format": "hawk-knowledge", "schema": 99, "triples": []}).encode(),
        "half.json": json.dumps({"format": "hawk-knowledge", "schema": 2, "triples": [good, bad]}).encode(),
    }
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        for name, raw in cases.items():
            (tmp_path / name).write_bytes(raw)
            with pytest.raises(StoreError, match=name):
                kb.import_file(tmp_path / name)
        assert len(kb) == 0
    with pytest.raises(StoreError, match=r"triples\[1\]: context\.trigger"):
        read_export(tmp_path / "half.json")


def _store_with_triples(path, n: int = 30) -> None:
    with KnowledgeStore(path) as kb:
        for i in range(n):
            kb.add(make_triple(i))


@pytest.mark.parametrize("kind, says", [
    ("garbage", "not a knowledge store"),
    ("truncated", "damaged"),  # cut at a page boundary
    ("cut", "cut short"),  # in the middle of its last page
    ("corrupt", "damaged knowledge store"),  # a b-tree page overwritten
    ("foreign", "another application"),
    ("newer", "newer Hawk"),
])
def test_unusable_store_files_are_refused_and_left_unchanged(tmp_path, kind, says):
    path = tmp_path / "kb.sqlite"
    if kind == "garbage":
        path.write_bytes(b"this is not a database, but it is somebody's file" * 100)
    elif kind in ("truncated", "cut"):
        _store_with_triples(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 3] if kind == "truncated" else raw[:-100])
    elif kind == "corrupt":
        _store_with_triples(path)
        db = sqlite3.connect(path)
        root, page = db.execute("SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master "
                                "WHERE name = 'triples'").fetchone()
        db.close()
        raw = bytearray(path.read_bytes())
        raw[(root - 1) * page + 8:(root - 1) * page + 108] = b"\xa5" * 100
        path.write_bytes(raw)
    elif kind == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (x)")
        db.commit()
        db.close()
    else:
        _store_with_triples(path, 1)
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version={store_mod.SCHEMA_VERSION + 1}")
        db.commit()
        db.close()
    before = path.read_bytes()
    for readonly in (False, True):  # refused when opened, before anything could be written
        with pytest.raises(StoreError, match=f"kb.sqlite: .*{says}"):
            KnowledgeStore(path, readonly=readonly)
    assert path.read_bytes() == before


def test_an_older_schema_is_migrated(tmp_path):
    path = tmp_path / "kb.sqlite"
    db = sqlite3.connect(path)
    db.executescript(store_mod.MIGRATIONS[0])
    db.execute(f"PRAGMA application_id={store_mod.APPLICATION_ID}")
    db.execute("PRAGMA user_version=1")
    t = make_triple()
    db.execute("INSERT INTO triples VALUES (?, 0, 'active', 0, ?)", (t.id, json.dumps(t.to_dict())))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="must be migrated"):
        KnowledgeStore(path, readonly=True)
    with KnowledgeStore(path) as kb:
        assert kb.get(t.id) == t
        kb.record(Application(t.id, "r", "w", "x", 0, applied=True, fixed=True, correct=True))
        assert kb._db.execute("PRAGMA user_version").fetchone()[0] == store_mod.SCHEMA_VERSION


def test_a_damaged_row_is_skipped_with_its_reason(tmp_path):
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(make_triple(0))
        kb.add(make_triple(1))
        kb._db.execute("UPDATE triples SET body = '{\"id\": 1}' WHERE id = ?", (make_triple(1).id,))
        assert [t.id for t in kb.triples()] == [make_triple(0).id]
        assert "damaged" in kb.skipped[0]


def test_read_only_store_refuses_writes(tmp_path):
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(make_triple())
    with KnowledgeStore(tmp_path / "kb.sqlite", readonly=True) as kb:
        assert len(kb.triples()) == 1
        with pytest.raises(StoreError, match="read-only"):
            kb.add(make_triple(2))


@contextmanager
def _file_size_limit(limit: int):
    """Writes past ``limit`` bytes fail with EFBIG, as on a full disk (SIGXFSZ ignored: the
    process is told, not killed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_full_disk_is_reported_and_what_was_committed_stays(tmp_path):
    path = tmp_path / "kb.sqlite"
    _store_with_triples(path, 1)
    committed = [make_triple(0).id]
    with _file_size_limit(128 * 1024), KnowledgeStore(path) as kb:  # closed under the limit too
        with pytest.raises(StoreError) as full:
            for i in range(1, 10_000):
                t = make_triple(i)
                kb.add(t)
                kb.record(Application(t.id, "r", "w", "t", i, applied=True, fixed=True, correct=True))
                committed.append(t.id)
        with pytest.raises(StoreError, match="file size limit"):  # the next write is told the same
            kb.add(make_triple(99_999))
        assert len(kb) >= len(committed)  # still read
    assert str(full.value).startswith(f"{path}: cannot write: ") and "file size limit of 131072 bytes" in str(full.value)
    with KnowledgeStore(path) as kb:  # room again
        assert kb._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        triples = {t.id: t for t in kb.triples()}
        # everything committed is there; of the write that failed, nothing or its triple alone
        assert set(committed) <= set(triples) and len(triples) <= len(committed) + 1
        assert all(t.stats.applications == len(kb.applications(t.id)) for t in triples.values())
        assert kb.add(make_triple(99_999))


def test_a_full_disk_mid_run_is_reported_and_the_run_goes_on(tmp_path, davinci):
    from hawk.ir import ops
    from hawk.knowledge.base import Knowledge
    from hawk.runtime import HostWorker
    from hawk.search import tune

    from .test_knowledge_loop import Stubborn

    path = tmp_path / "kb.sqlite"
    worker = HostWorker()  # started before the disk fills: its own files are not the store's
    try:
        with KnowledgeStore(path) as store, ExitStack() as full:
            kb = Knowledge(store, run="run-1")
            before = []

            def fill_the_disk(cand, result):  # once something is learned: the store's files cannot grow
                if kb.learned and not before:
                    before.extend(store.triples())
                    full.enter_context(_file_size_limit(max(os.path.getsize(f"{path}{s}") for s in ("", "-wal"))))

            result = tune(ops.unary("relu", "relu", 64, 256), davinci, Stubborn(), budget=8, worker=worker,
                          knowledge=kb, on_candidate=fill_the_disk)
    finally:
        worker.close()
    assert before and result.iterations == 8 and result.solved
    reports = [c.error for c in result.candidates if c.error]  # once, on the candidate whose learning failed
    assert len(reports) == 1 and reports[0].startswith(f"knowledge: StoreError: {path}: cannot write: ")
    assert "file size limit" in reports[0]
    with KnowledgeStore(path) as store:  # what was learned before the disk filled, as it was
        assert store.triples() == before


unprivileged = pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files and directories")


@unprivileged
def test_a_read_only_location_is_refused_with_its_cause(tmp_path, capsys):
    from hawk.cli import main

    folder, file = tmp_path / "ro", tmp_path / "kb.sqlite"
    folder.mkdir()
    _store_with_triples(folder / "kb.sqlite", 1)
    _store_with_triples(file, 1)
    folder.chmod(0o555)
    file.chmod(0o444)
    before = (folder / "kb.sqlite").read_bytes(), file.read_bytes()
    try:
        for path in (folder / "kb.sqlite", folder / "new.sqlite"):
            with pytest.raises(StoreError) as refused:
                KnowledgeStore(path)
            assert str(refused.value) == f"{path}: cannot write: the directory {folder} is not writable " \
                                         "(SQLite keeps its -wal and -shm files beside the store)"
        with pytest.raises(StoreError, match=re.escape(f"; the directory {folder} is not writable")):
            KnowledgeStore(folder / "kb.sqlite", readonly=True)  # SQLite cannot make its -shm file either
        with pytest.raises(StoreError) as refused:
            KnowledgeStore(file)
        assert str(refused.value) == f"{file}: cannot write: the file is not writable (it can still be opened read-only)"
        with KnowledgeStore(file, readonly=True) as kb:  # as it says
            assert len(kb.triples()) == 1
        model = str(Path(__file__).parents[2] / "examples" / "small_cnn.py")
        target = ["--target", "davinci-like"]
        for path in (folder / "kb.sqlite", file):
            for command in (["tune", *target, "--workload", "relu_resnet"], ["compile", model, *target],
                            ["tune", *target, "--model-file", model, "--work-dir", str(tmp_path / "db")],
                            ["kb", "import", str(tmp_path / "export.json")]):
                assert main([*command, "--kb", str(path)]) == 2
                assert f"hawk: error: {path}: cannot write: " in capsys.readouterr().err
        assert ((folder / "kb.sqlite").read_bytes(), file.read_bytes()) == before
    finally:
        folder.chmod(0o755)  # for the clean-up


def _writer(path, writer: int, n: int, shared: str, go) -> None:
    """Writer ``writer``: ``n`` triples of its own, applied once or twice each, and one
    application of the triple every writer shares per triple written."""
    run = f"run-{writer}"
    go.wait()  # all at once
    with KnowledgeStore(path) as kb:
        for i in range(n):
            t = make_triple(writer * 1000 + i, run=run)
            kb.add(t)
            for _ in range(1 + i % 2):
                kb.record(Application(t.id, run, t.provenance.workload, "t", i, applied=True, fixed=True, correct=True))
            kb.record(Application(shared, run, "shared", "t", i, applied=True, fixed=i % 2 == 0, correct=True))


def test_sixteen_processes_learn_into_one_store(tmp_path):
    path, writers, n = tmp_path / "kb.sqlite", 16, 25
    shared = make_triple(999_999, run="shared")
    with KnowledgeStore(path) as kb:
        kb.add(shared)
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, w, n, shared.id, go)) for w in range(writers)]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with KnowledgeStore(path) as kb:
        triples = kb.triples()
        log = kb.applications()
    by_id = {t.id: t for t in triples}
    expected = {make_triple(w * 1000 + i, run=f"run-{w}").id for w in range(writers) for i in range(n)}
    assert len(by_id) == len(triples) and set(by_id) == expected | {shared.id}  # each once, none lost
    for t in triples:
        if t.id == shared.id:
            continue
        w, i = divmod(t.provenance.iteration, 1000)
        mine = [a for a in log if a["triple_id"] == t.id]
        assert t.provenance.run == f"run-{w}" and {a["run"] for a in mine} == {f"run-{w}"}
        assert t.stats.applications == len(mine) == 1 + i % 2
    # the triple all of them applied: no update lost to another writer's
    on_shared = [a for a in log if a["triple_id"] == shared.id]
    assert by_id[shared.id].stats.applications == len(on_shared) == writers * n
    assert by_id[shared.id].stats.successes == writers * ((n + 1) // 2)
    assert all(sum(a["run"] == f"run-{w}" for a in on_shared) == n for w in range(writers))


def test_kb_cli(tmp_path, capsys):
    from hawk.cli import main

    path = tmp_path / "kb.sqlite"
    t = make_triple()
    with KnowledgeStore(path) as kb:
        kb.add(t)
    assert main(["kb", "list", "--kb", str(path)]) == 0
    assert t.id in capsys.readouterr().out
    assert main(["kb", "show", t.id, "--kb", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "When:  fault SCOPE_OVERFLOW (scope=global.npu.ub)" in shown and "Do:    fit_tiles(" in shown
    assert main(["kb", "export", str(tmp_path / "out.json"), "--kb", str(path)]) == 0
    assert main(["kb", "import", str(tmp_path / "out.json"), "--kb", str(tmp_path / "b.sqlite")]) == 0
    assert main(["kb", "stats", "--kb", str(tmp_path / "b.sqlite"), "--json"]) == 0
    assert '"unverified": 1' in capsys.readouterr().out
    assert main(["kb", "show", "nope", "--kb", str(path)]) == 2
    assert main(["kb", "list", "--kb", str(tmp_path / "missing.sqlite")]) == 2
    (tmp_path / "junk.sqlite").write_bytes(b"junk" * 1000)
    assert main(["kb", "stats", "--kb", str(tmp_path / "junk.sqlite")]) == 2
    assert "not a knowledge store" in capsys.readouterr().err
