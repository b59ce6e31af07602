import dataclasses
import json

import pytest

from hawk.npu import CODES, HardwareSpec, SpecError, load_spec, preset_names, with_capacity


def test_presets_load_with_distinct_stable_fingerprints():
    assert preset_names() == ["davinci-like", "edge-like"]
    a, b = (load_spec(n) for n in preset_names())
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == HardwareSpec.from_json(a.to_json()).fingerprint()


def test_davinci_like_matches_the_design():
    spec = load_spec("davinci-like")
    kib = {s.name: s.capacity // 1024 for s in spec.onchip_scopes}
    assert kib == {"global.npu.l1": 512, "global.npu.l0a": 64, "global.npu.l0b": 64,
                   "global.npu.l0c": 128, "global.npu.ub": 192}
    legal = {(p.src.split(".")[-1], p.dst.split(".")[-1], p.pipe) for p in spec.paths}
    assert legal == {("global", "l1", "MTE2"), ("global", "ub", "MTE2"), ("l1", "l0a", "MTE1"),
                     ("l1", "l0b", "MTE1"), ("l0c", "ub", "FIX"), ("l0c", "global", "FIX"),
                     ("ub", "global", "MTE3"), ("ub", "l1", "MTE3")}
    assert spec.path("global", "global.npu.l0a") is None
    cube = spec.unit("cube")
    assert {(s.in_dtype, s.acc_dtype, s.m, s.n, s.k) for s in cube.shapes} >= {
        ("float16", "float32", 16, 16, 16), ("int8", "int32", 16, 16, 32)}
    assert spec.unit("vector").reads == ("global.npu.ub",)
    assert all(spec.offchip not in u.reads + u.writes for u in spec.units)
    assert {f.code for f in spec.faults} == set(CODES)


def test_edge_like_matches_the_design():
    spec = load_spec("edge-like")
    assert {s.name for s in spec.onchip_scopes} == {"global.npu.spm", "global.npu.acc"}
    mac = spec.unit("mac")
    assert (mac.shapes[0].m, mac.shapes[0].n) == (8, 8)
    assert mac.writes == ("global.npu.acc",)
    assert spec.path("global.npu.acc", "global") is None


def test_json_round_trip_and_file(tmp_path):
    spec = load_spec("davinci-like")
    path = tmp_path / "npu.json"
    spec.save(path)
    again = load_spec(str(path))
    assert again == spec
    assert again.fingerprint() == spec.fingerprint()


def test_changed_spec_changes_fingerprint():
    spec = load_spec("davinci-like")
    smaller = with_capacity(spec, "global.npu.ub", 64 * 1024)
    assert smaller.scope("global.npu.ub").capacity == 64 * 1024
    assert smaller.fingerprint() != spec.fingerprint()


def _broken(mutate):
    data = load_spec("davinci-like").to_dict()
    mutate(data)
    return json.dumps(data)


@pytest.mark.parametrize("mutate, field, words", [
    (lambda d: d["paths"][0].update(src="global.npu.l2"), "paths[0].src", "unknown scope"),
    (lambda d: d["scopes"][1].update(capacity=-5), "scopes[1].capacity", "positive"),
    (lambda d: d["scopes"][1].update(capacity=0), "scopes[1].capacity", "positive"),
    (lambda d: d["units"][1]["reads"].append("global.npu.l9"), "units[1].reads[1]", "undeclared scope"),
    (lambda d: d["units"][0].update(kind="tensor"), "units[0].kind", "must be one of"),
    (lambda d: d["scopes"][2].update(alignment=48), "scopes[2].alignment", "power of two"),
    (lambda d: d["scopes"].append(dict(d["scopes"][1])), "scopes[6].name", "duplicate"),
    (lambda d: d["scopes"][1].update(name="npu.l1"), "scopes[1].name", "global."),
    (lambda d: d["paths"][0].update(bandwidth=0), "paths[0].bandwidth", "positive"),
    (lambda d: d["paths"][0].update(latency="slow"), "paths[0].latency", "integer"),
    (lambda d: d["units"][0].update(shapes=[]), "units[0].shapes", "at least one"),
    (lambda d: d.update(clock_ghz=0), "clock_ghz", "positive"),
    (lambda d: d.update(colour="red"), "spec.colour", "unknown field"),
    (lambda d: d.pop("units"), "spec.units", "missing"),
    (lambda d: d.update(faults=d["faults"][:3]), "faults", "lacks code"),
])
def test_bad_spec_names_the_field(mutate, field, words):
    with pytest.raises(SpecError) as err:
        HardwareSpec.from_json(_broken(mutate), "my.json")
    assert field in str(err.value) and words in str(err.value), str(err.value)


def test_bad_spec_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpecError, match="bad.json: not valid JSON"):
        load_spec(str(bad))
    with pytest.raises(SpecError, match="unknown target"):
        load_spec(str(tmp_path / "missing.json"))


def test_spec_without_manual_gets_the_standard_one():
    data = load_spec("edge-like").to_dict()
    del data["faults"]
    assert {f.code for f in HardwareSpec.from_dict(data).faults} == set(CODES)


def test_specs_are_frozen():
    spec = load_spec("edge-like")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"
