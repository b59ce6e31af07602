import dataclasses

import tvm
from tvm import s_tir

from hawk.npu import api_view, intrinsics, load_spec, target
from tests.hidden_spec import hidden_reads_trapped, hide


def test_target_is_llvm_keyed_npu_with_features(davinci):
    t = target(davinci)
    assert t.kind.name == "llvm"
    assert "npu" in t.keys
    assert t.attrs["feature.npu_spec"] == "davinci-like"
    assert t.attrs["feature.npu_fingerprint"] == davinci.fingerprint()
    assert str(tvm.target.Target("hawk/davinci-like")) == str(t)


def test_intrinsics_follow_the_spec_shapes(davinci, edge):
    names = {i.name for i in intrinsics(davinci)}
    assert "davinci-like.cube.mma_f16_f32" in names and "davinci-like.cube.fill_f32" in names
    mac = {i.name: i for i in intrinsics(edge)}["edge-like.mac.mma_s8_s32"]
    assert (mac.shape.m, mac.shape.n, mac.shape.k) == (8, 8, 8)
    for name in names:
        assert s_tir.TensorIntrin.get(name, allow_missing=True) is not None


def test_api_view_shows_names_only(davinci):
    view = api_view(davinci)
    assert [f.name for f in dataclasses.fields(view)] == ["target", "scopes", "intrinsics", "signatures"]
    text = view.render()
    assert "global.npu.ub" in text and "davinci-like.cube.mma_f16_f32" in text
    for scope in davinci.onchip_scopes:
        assert str(scope.capacity) not in text
        assert f"{scope.capacity // 1024} KiB" not in text
    for word in ("MTE", "bandwidth", "latency", "align", "capacity", "FIX"):
        assert word not in text


def test_user_spec_registers_its_own_target_and_intrinsics(tmp_path):
    data = load_spec("edge-like").to_dict()
    data["name"] = "my-npu"
    path = tmp_path / "my.json"
    path.write_text(__import__("json").dumps(data))
    spec = load_spec(str(path))
    assert target(spec).attrs["feature.npu_spec"] == "my-npu"
    assert any(i.name.startswith("my-npu.mac.") for i in intrinsics(spec))


def test_api_view_never_reads_capacities_paths_alignments_or_costs(davinci, edge):
    for spec in (davinci, edge):
        with hidden_reads_trapped() as reads:
            assert api_view(hide(spec)) == api_view(spec)
        assert reads == []
