"""Hawk inside TVM: tasks of a model, databases used safely, tune_model, the compile flow."""

import json
import multiprocessing
import warnings

import numpy as np
import pytest
import tvm
import tvm_ffi
from hawk.ir import ops
from hawk.tuning import database as dbmod
from hawk.tuning.around import tunable
from hawk.tuning.compile import CompileOptions, compile_model, run
from hawk.tuning.tasks import extract_tasks
from hawk.tuning.tune import commit_trace, tune_model
from tvm import relax, s_tir
from tvm.s_tir import meta_schedule as ms

ROWS, COLS = 64, 256


def small_model():
    """relu(x + b) * rowsum(x) + rowsum(b): two PrimFuncs, the row sum used twice."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((ROWS, COLS), "float32"))
    b = relax.Var("b", relax.TensorType((ROWS, COLS), "float32"))
    with bb.function("main", [x, b]):
        with bb.dataflow():
            sx = bb.emit(relax.op.sum(x, axis=[1], keepdims=True))
            sb = bb.emit(relax.op.sum(b, axis=[1], keepdims=True))
            h = bb.emit(relax.op.nn.relu(relax.op.add(x, b)))
            out = bb.emit_output(relax.op.add(relax.op.multiply(h, sx), sb))
        bb.emit_func_output(out)
    rng = np.random.default_rng(0)
    return bb.get(), {"x": rng.normal(size=(ROWS, COLS)).astype("float32"),
                      "b": rng.normal(size=(ROWS, COLS)).astype("float32")}


def expected(inputs):
    x, b = inputs["x"], inputs["b"]
    return np.maximum(x + b, 0) * x.sum(axis=1, keepdims=True) + b.sum(axis=1, keepdims=True)


def test_tasks_are_deduplicated_weighted_and_checkable(davinci):
    mod, _ = small_model()
    tasks = extract_tasks(mod, davinci)
    assert sum(t.weight for t in tasks) >= len(tasks) >= 2
    assert any(t.weight == 2 for t in tasks)  # the row sum twice: one task, weight 2
    for t in tasks:
        assert t.workload.n_outputs == 1 and t.workload.reference is None  # checked against the host build
        assert "int64" not in t.mod.script()  # narrowed: the intrinsics' descriptions are int32
    # an IRModule of PrimFuncs: the same function twice is one task of weight 2
    relu = ops.unary("relu", "relu", ROWS, COLS).func
    assert [t.weight for t in extract_tasks(tvm.IRModule({"a": relu, "b": relu}), davinci)] == [2]


def _record(mod, factor=32):
    sch = s_tir.Schedule(mod)
    block = sch.get_child_blocks(sch.get_sblock("root"))[0]
    sch.split(sch.get_loops(block)[-1], [None, factor])
    return sch.trace


def test_database_lines_that_do_not_load_are_skipped_with_a_warning(tmp_path):
    mod = ops.unary("relu", "relu", ROWS, COLS).module()
    commit_trace(tmp_path, mod, _record(mod), 1000, "a")
    commit_trace(tmp_path, mod, _record(mod, 64), 900, "b")
    with open(tmp_path / dbmod.RECORDS, "a") as f:
        f.write('[0, [["truncated\n')  # a writer killed mid-line
        f.write('[7, []]\n')  # a record of a workload that is not there
    with open(tmp_path / dbmod.WORKLOADS, "a") as f:
        f.write("not json\n")
    with pytest.warns(dbmod.DatabaseWarning, match="skipped"):
        db, skipped = dbmod.load(tmp_path)
    assert skipped == 3 and len(db.get_all_tuning_records()) == 2
    best = db.query_tuning_record(mod, tvm.target.Target("llvm"), "main")
    assert float(best.run_secs[0]) == pytest.approx(900e-9)
    with pytest.raises(Exception):  # noqa: B017 - what stock JSONDatabase does with the same files
        ms.database.JSONDatabase(work_dir=str(tmp_path)).get_all_tuning_records()


def _commit_many(args):
    root, rows = args
    wl = ops.unary("relu", "relu", rows, COLS)
    mod = wl.module()
    for k, factor in enumerate((16, 32, 64, 128)):
        commit_trace(root, mod, _record(mod, factor), rows * 100 + k, f"w{rows}")
    return rows


def test_processes_committing_at_once_lose_and_misattribute_nothing(tmp_path):
    shapes = [8, 16, 24, 32, 40, 48]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_commit_many, [(str(tmp_path), r) for r in shapes])) == shapes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every line loads
        db, skipped = dbmod.load(tmp_path)
    assert skipped == 0
    records = db.get_all_tuning_records()
    assert len(records) == 4 * len(shapes)
    for r in records:  # each record sits with its own workload: cycles encode the rows
        rows = int(r.workload.mod["main"].params[0].shape[0])
        assert round(float(r.run_secs[0]) * 1e9) // 100 == rows
    assert not list((tmp_path / "parts").iterdir())  # the parts are merged and gone


def test_tiles_become_decisions_that_replay_the_same_kernel(davinci):
    wl = ops.softmax("sm", 64, 512)
    program = ("v0 = sch.get_sblock(name=\"T_softmax_norm\")\nv1, v2 = sch.get_loops(block=v0)\n"
               "v3, v4 = sch.split(loop=v1, factors=[None, 4])\n"
               "v5 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope=\"global.npu.ub\")\n"
               "sch.reverse_compute_at(block=v5, loop=v3)\n")
    lifted = tunable(program, wl.module())
    assert "sample_perfect_tile(loop=v1, n=2, max_innermost_factor=1024, decision=[16, 4])" in lifted
    assert "preserve_unit_loops=True" in lifted
    from hawk.propose.program import apply_program

    a, b = apply_program(program, wl.module()), apply_program(lifted, wl.module())
    assert a.ok and b.ok and tvm_ffi.structural_equal(a.module, b.module)


def test_compile_schedules_every_primfunc_and_matches_numpy(tmp_path, davinci):
    mod, inputs = small_model()
    db = tmp_path / "db"
    ex, report = compile_model(mod, davinci, database=db, budget=6)
    assert np.allclose(run(ex, mod, inputs), expected(inputs), rtol=1e-4, atol=1e-4)
    assert {k.source for k in report.kernels} == {"search"}
    assert report.total_cycles == sum(k.cycles * k.calls for k in report.kernels) > 0
    assert any(k.calls == 2 for k in report.kernels)
    # the second compile finds every kernel in the database, with no search at all
    with CompileOptions(database=db, budget=0) as opts:
        ex2 = tvm.compile(mod, target=__import__("hawk.npu", fromlist=["target"]).target(davinci),
                          relax_pipeline="hawk")
    assert {k.source for k in opts.report.kernels} == {"database"}
    assert opts.report.total_cycles == report.total_cycles
    assert np.allclose(run(ex2, mod, inputs), expected(inputs), rtol=1e-4, atol=1e-4)


def test_the_hawk_pipeline_needs_a_hawk_target():
    mod, _ = small_model()
    with pytest.raises(Exception, match="Hawk NPU target"):
        tvm.compile(mod, target="llvm", relax_pipeline="hawk")


def test_tune_model_in_parallel_writes_one_database(tmp_path, davinci):
    mod, inputs = small_model()
    kb = tmp_path / "kb.sqlite"
    report = tune_model(mod, davinci, tmp_path / "work", budget=6, knowledge=kb, jobs=2)
    assert report.weighted_cycles and all(t.source == "hawk" for t in report.tasks)
    db, skipped = dbmod.load(tmp_path / "work")
    assert skipped == 0 and len(db.get_all_tuning_records()) == len(report.tasks)
    ex, compiled = compile_model(mod, davinci, database=tmp_path / "work", budget=0)
    assert {k.source for k in compiled.kernels} == {"database"}
    assert np.allclose(run(ex, mod, inputs), expected(inputs), rtol=1e-4, atol=1e-4)
    assert json.dumps(report.to_dict())


def _triple(code, fields, rewrite, params, run="r"):
    from hawk.knowledge import Context, Executable, Provenance, Semantics, Triple

    ctx = Context(trigger="fault", code=code, fields=fields, category="elementwise")
    prov = Provenance(run=run, workload="w", target="davinci-like", iteration=1, source="explore")
    return Triple.new(ctx, Semantics("learned", {}), Executable(rewrite, params, "fault_gone"), prov).with_stats(
        verified=True, applications=2, successes=2)


def test_exported_rules_reject_what_knowledge_says_is_illegal(tmp_path, davinci):
    from hawk.cli import main
    from hawk.knowledge import KnowledgeStore
    from hawk.propose.program import apply_program
    from hawk.runtime.verify import verify
    from hawk.tuning.rules import LearnedFacts, RulesError, load_rules

    from tests.knowledge.test_knowledge_rewrite import ROWS as PROGRAM

    kb = tmp_path / "kb.sqlite"
    with KnowledgeStore(kb) as store:
        store.add(_triple("UNIT_SCOPE", {"unit": "scalar", "scope": "global.npu.l1", "access": "read"}, "rescope",
                          {"scope": "global.npu.l1", "to": "global.npu.ub"}))
        store.add(_triple("SCOPE_OVERFLOW", {"scope": "global.npu.ub", "capacity": "4096"}, "fit_tiles",
                          {"scope": "global.npu.ub", "capacity": 4096}))
        unverified = _triple("ILLEGAL_PATH", {"src": "global", "dst": "global.npu.l0a"}, "feed",
                             {"dst": "global.npu.l0a", "via": "global.npu.l1"})
        store.add(unverified.with_stats(verified=False, applications=0, successes=0))
    assert main(["kb", "export-rules", "--kb", str(kb), "-o", str(tmp_path / "rules.json")]) == 0
    rules = load_rules(tmp_path / "rules.json")
    assert rules.capacity == {"global.npu.ub": 4096} and not rules.no_path  # only what has worked
    wl = ops.unary("relu", "relu", ROWS, COLS)
    on_l1 = apply_program(PROGRAM.format(scope="global.npu.l1"), wl.module()).module
    on_ub = apply_program(PROGRAM.format(scope="global.npu.ub"), wl.module()).module
    assert verify(on_l1, davinci) and any("scalar unit cannot read global.npu.l1" in v for v in rules.violations(on_l1))
    assert any("holds 4096 bytes" in v for v in rules.violations(on_ub))  # the learned (small) capacity
    post = LearnedFacts(rules)
    assert post.apply(s_tir.Schedule(on_l1)) is False and post.rejected == 1
    (tmp_path / "bad.json").write_text(json.dumps({"format": "hawk-rules", "version": 1, "capacity": {"x": -1}}))
    with pytest.raises(RulesError, match="capacity"):
        load_rules(tmp_path / "bad.json")
    with pytest.raises(RulesError, match="version"):
        (tmp_path / "new.json").write_text(json.dumps({"format": "hawk-rules", "version": 99}))
        load_rules(tmp_path / "new.json")


MODEL_FILE = '''
import numpy as np
from tvm import relax

def model():
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((64, 256), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.nn.relu(x))
        bb.emit_func_output(out)
    return bb.get(), {"x": np.random.default_rng(0).normal(size=(64, 256)).astype("float32")}

def reference(inputs):
    return np.maximum(inputs["x"], 0)
'''


def test_hawk_compile_and_tune_from_the_command_line(tmp_path, capsys):
    from hawk.cli import main

    model = tmp_path / "model.py"
    model.write_text(MODEL_FILE)
    out = tmp_path / "report.json"
    assert main(["tune", "--model-file", str(model), "--target", "davinci-like", "--work-dir", str(tmp_path / "w"),
                 "--budget", "6", "-q"]) == 0
    assert main(["compile", str(model), "--target", "davinci-like", "--db", str(tmp_path / "w"), "--budget", "0",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 tasks, 1 with a kernel" in text and "match" in text and "database" in text
    doc = json.loads(out.read_text())
    assert doc["match"] and doc["total_cycles"] > 0 and doc["kernels"][0]["source"] == "database"
    assert main(["compile", str(tmp_path / "nope.py"), "--target", "davinci-like"]) == 2


def test_a_function_of_one_tensor_twice_gets_two_names(davinci):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((32, 128), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(relax.op.multiply(x, x))
        bb.emit_func_output(out)
    (task,) = extract_tasks(bb.get(), davinci)
    names = [b.name for b in task.mod["main"].params]
    assert len(set(names)) == 3
    from hawk.propose.offline import OfflineProposer
    from hawk.search import tune

    assert tune(task.workload, davinci, OfflineProposer(), budget=3).best is not None


def test_tune_model_file_with_a_recorded_llm(tmp_path):
    from hawk.cli import main

    model = tmp_path / "model.py"
    model.write_text(MODEL_FILE)
    transcript = tmp_path / "empty.jsonl"
    transcript.write_text("")
    # a transcript with no answers: every proposal fails as a value, the run ends with no kernel
    code = main(["tune", "--model-file", str(model), "--target", "davinci-like", "--work-dir", str(tmp_path / "w"),
                 "--budget", "2", "--llm", f"replay:{transcript}", "-q", "--jobs", "2"])
    assert code == 1
    assert main(["tune", "--model-file", str(model), "--target", "davinci-like", "--work-dir", str(tmp_path / "w"),
                 "--llm", "replay:/nonexistent"]) == 2


def test_renaming_parameters_never_runs_text_from_the_model(tmp_path):
    from hawk.tuning.tasks import unique_names
    from tvm import te

    marker = tmp_path / "pwned"
    name = f'x"); open("{marker}", "w").write("1"); ("'  # a name written to escape a print-and-parse
    a, b = te.placeholder((4, 8), "float32", name=name), te.placeholder((4, 8), "float32", name=name)
    c = te.compute((4, 8), lambda i, j: a[i, j] * b[i, j], name="C")
    renamed = unique_names(te.create_prim_func([a, b, c]))
    assert [p.name for p in renamed.params] == [name, f"{name}_1", "C"] and not marker.exists()
