"""Test cases shared by several test files."""

import pytest
from hawk.bench.reference import has_reference
from hawk.bench.suites import load_suite
from hawk.npu import load_spec


def reference_cases(suites=("smoke", "level1"), skip_ops=(), skip=None):
    """(preset, workload) for every suite workload that has a vendor kernel, less the ops in
    ``skip_ops`` and the pairs for which ``skip(spec, workload)`` holds."""
    out = []
    for preset in ("davinci-like", "edge-like"):
        spec = load_spec(preset)
        for suite in suites:
            for wl in load_suite(suite):
                if has_reference(wl, spec) and wl.op not in skip_ops and not (skip and skip(spec, wl)):
                    out.append(pytest.param(preset, wl, id=f"{preset}-{wl.name}"))
    return out
