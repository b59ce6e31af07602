"""The gate: kernels faster than their roofline or far faster than the reference are flagged."""

import pytest

from hawk.search import MAX_SPEEDUP, gate


def test_a_kernel_faster_than_its_roofline_is_flagged_with_the_numbers():
    v = gate(cycles=90, roofline_cycles=100, reference_cycles=200)
    assert v.flagged and v.reason == "faster than the roofline: 90 < 100 cycles"


def test_the_profile_model_bug_flag_is_enough():
    v = gate(cycles=500, model_bug=True)
    assert v.flagged and v.reason == "faster than the roofline"


def test_far_faster_than_the_reference_is_flagged():
    v = gate(cycles=100, roofline_cycles=10, reference_cycles=2000)
    assert v.flagged and v.reason == "20.0x faster than the reference (100 vs 2000 cycles)"


@pytest.mark.parametrize("cycles", [200, 223, 1000, 5000])  # 10x, 9x, 2x and slower than the reference
def test_plausible_kernels_pass(cycles):
    v = gate(cycles=cycles, roofline_cycles=100, reference_cycles=2000)
    assert not v.flagged and v.status == "ok" and v.reason == ""


def test_at_the_roofline_is_plausible():
    assert not gate(cycles=100, roofline_cycles=100).flagged


def test_without_a_reference_only_the_roofline_rule_applies():
    assert gate(cycles=100, roofline_cycles=10, reference_cycles=100_000).flagged
    assert not gate(cycles=100, roofline_cycles=10, reference_cycles=None).flagged
    assert gate(cycles=9, roofline_cycles=10, reference_cycles=None).flagged


def test_zero_cycles_without_a_roofline_is_flagged():
    v = gate(cycles=0, reference_cycles=None)
    assert v.flagged and "no work was charged" in v.reason


def test_an_untimed_kernel_has_nothing_to_judge():
    assert not gate(cycles=None, roofline_cycles=100, reference_cycles=100).flagged


def test_the_threshold_is_ten():
    assert MAX_SPEEDUP == 10
    assert not gate(cycles=100, reference_cycles=int(100 * MAX_SPEEDUP)).flagged
    assert gate(cycles=100, reference_cycles=int(100 * MAX_SPEEDUP) + 1).flagged
