import json
import multiprocessing
import sqlite3

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


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign", "newer"])
def test_unusable_store_files_are_refused_and_left_unchanged(tmp_path, kind):
    path = tmp_path / "kb.sqlite"
    if kind == "garbage":
        path.write_bytes(b"this is not a database, but it is somebody's file" * 100)
    elif kind == "truncated":
        with KnowledgeStore(path) as kb:
            for i in range(30):
                kb.add(make_triple(i))
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 3])
    elif kind == "foreign":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE t (x)")
        db.commit()
        db.close()
    else:
        with KnowledgeStore(path):
            pass
        db = sqlite3.connect(path)
        db.execute(f"PRAGMA user_version={store_mod.SCHEMA_VERSION + 1}")
        db.commit()
        db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="kb.sqlite"), KnowledgeStore(path) as kb:
        kb.triples()
        kb.add(make_triple(99))
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


def _writer(path, start):
    with KnowledgeStore(path) as kb:
        for i in range(start, start + 25):
            kb.add(make_triple(i, run=f"run-{start}"))
            kb.record(Application(make_triple(i, run=f"run-{start}").id, f"run-{start}", f"w{i}", "t", i,
                                  applied=True, fixed=True, correct=True))


def test_several_processes_write_one_store(tmp_path):
    path = tmp_path / "kb.sqlite"
    KnowledgeStore(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 100)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with KnowledgeStore(path) as kb:
        triples = kb.triples()
        assert len(triples) == 100
        assert all(t.stats.applications == 1 and t.provenance.run == f"run-{(t.provenance.iteration // 100) * 100}"
                   for t in triples)


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
