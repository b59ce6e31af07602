import json

import pytest
import tvm

from hawk.cli import main

from .runtime.broken_kernels import dma_misalign


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_targets(capsys):
    code, out, _ = run(capsys, "targets")
    assert code == 0 and "davinci-like" in out and "edge-like" in out
    code, out, _ = run(capsys, "targets", "--json")
    assert {t["name"] for t in json.loads(out)} == {"davinci-like", "edge-like"}


def test_targets_show(capsys, tmp_path):
    code, out, _ = run(capsys, "targets", "show", "davinci-like")
    assert code == 0 and "global.npu.l0a" in out and "SCOPE_OVERFLOW" in out
    code, out, _ = run(capsys, "targets", "show", "edge-like", "--json")
    assert json.loads(out)["name"] == "edge-like"
    path = tmp_path / "npu.json"
    path.write_text(out)
    code, out2, _ = run(capsys, "targets", "show", str(path), "--json")
    assert code == 0 and out2 == out  # the JSON shown is itself a spec file


def test_workloads(capsys):
    code, out, _ = run(capsys, "workloads", "--suite", "smoke", "--json")
    rows = json.loads(out)
    assert code == 0 and {r["name"] for r in rows} >= {"matmul_f16", "softmax_f32"}
    assert all(r["suite"] == "smoke" and r["category"] for r in rows)


def test_run_reference_json(capsys):
    code, out, _ = run(capsys, "run", "--target", "davinci-like", "--workload", "add_f16", "--reference",
                       "--json", "--trials", "2")
    result = json.loads(out)
    assert code == 0
    assert result["legal"] is True and result["correct"] is True and result["faults"] == []
    assert result["execution"]["trials"] == 2


def test_run_broken_kernel_file_exits_1_with_fault_codes(capsys, tmp_path, davinci):
    wl, kernel = dma_misalign(davinci)
    path = tmp_path / "k.json"
    path.write_text(tvm.ir.save_json(kernel))
    workload_file = tmp_path / "w.py"
    workload_file.write_text("from hawk.ir import ops\nWORKLOADS = [ops.unary('silu', 'silu', 64, 96)]\n")
    code, out, _ = run(capsys, "run", "--target", "davinci-like", "--workload", str(workload_file),
                       "--kernel", str(path), "--json")
    result = json.loads(out)
    assert code == 1 and result["legal"] is False and result["correct"] is False
    assert {f["code"] for f in result["faults"]} == {"DMA_MISALIGN"}


def test_run_with_user_spec_file(capsys, tmp_path):
    from hawk.npu import load_spec, with_capacity

    kernel = tmp_path / "silu.json"
    code, _, _ = run(capsys, "run", "--target", "davinci-like", "--workload", "silu_f32", "--reference",
                     "--trials", "1", "--save-kernel", str(kernel))
    assert code == 0 and kernel.is_file()
    small = with_capacity(load_spec("davinci-like"), "global.npu.ub", 4096)
    path = tmp_path / "small.json"
    small.save(path)
    code, out, _ = run(capsys, "run", "--target", str(path), "--workload", "silu_f32", "--kernel", str(kernel),
                       "--json")
    assert code == 1
    assert {f["code"] for f in json.loads(out)["faults"]} == {"SCOPE_OVERFLOW"}


@pytest.mark.parametrize("argv, words", [
    (["run", "--target", "nope", "--workload", "silu_f32", "--reference"], "unknown target"),
    (["run", "--target", "davinci-like", "--workload", "nope", "--reference"], "no workload named"),
    (["run", "--target", "davinci-like", "--reference"], "--workload"),
    (["run", "--target", "davinci-like", "--workload", "silu_f32", "--kernel", "/no/such.json"], "no such kernel"),
    (["targets", "show"], "needs a preset"),
])
def test_bad_usage_exits_2(capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == 2 and words in err


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--workload", "x"])
    assert exc.value.code == 2


def test_corrupt_kernel_file(capsys, tmp_path):
    bad = tmp_path / "k.json"
    bad.write_text("{garbage")
    code, _, err = run(capsys, "run", "--target", "davinci-like", "--workload", "silu_f32", "--kernel", str(bad))
    assert code == 2 and "not a TVM JSON kernel" in err


def test_run_a_schedule_program_file(capsys, tmp_path):
    from .propose.test_propose_program import ELEMENTWISE

    program = tmp_path / "relu.py"
    program.write_text(ELEMENTWISE)
    workload_file = tmp_path / "w.py"
    workload_file.write_text("from hawk.ir import ops\nWORKLOADS = [ops.unary('relu', 'relu', 64, 256)]\n")
    code, out, _ = run(capsys, "run", "--target", "davinci-like", "--workload", str(workload_file),
                       "--kernel", str(program), "--json", "--trials", "1")
    result = json.loads(out)
    assert code == 0 and result["legal"] and result["correct"] and result["cycles"] > 0
    program.write_text('b0 = sch.get_sblock(name="Y")\nimport os\n')
    code, out, _ = run(capsys, "run", "--target", "davinci-like", "--workload", str(workload_file),
                       "--kernel", str(program), "--json")
    result = json.loads(out)
    assert code == 1 and "line 2, column 1" in result["admission"]
