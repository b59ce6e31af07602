"""The standing set: every adversarial kernel is flagged, for the reason its category
expects, and is nearly right (its honest twin is a result), so that what flags it is the
detector and not an accident. Known holes are strict xfails: they fail the day they close."""

from collections import Counter

import pytest
import tvm
from hawk.propose.sandbox import parse_tvmscript
from hawk.runtime import HostWorker

from .judge import CATEGORIES, Judge, parsed_together, problem
from .kernels import adversaries

SET = adversaries()


@pytest.fixture(scope="module")
def judged():
    """Every kernel and its twin through the loop, on one worker and one sandboxed parse;
    also what that parse answered, text by text."""
    worker = HostWorker()
    judge = Judge(worker)
    kernels = [k for a in SET for k in (a.kernel(), a.twin()) if not isinstance(k, str)]
    try:
        with parsed_together(kernels) as answers:
            results = {a.name: (judge.adversary(a), judge.twin(a)) for a in SET}
        yield results, answers
    finally:
        worker.close()


def _params():
    return [pytest.param(a, id=a.name, marks=pytest.mark.xfail(strict=True, reason=a.hole) if a.hole else ())
            for a in SET]


def test_every_category_has_three_kernels_or_more():
    counts = Counter(a.category for a in SET)
    assert set(counts) == set(CATEGORIES) and min(counts.values()) >= 3, counts
    assert len({a.name for a in SET}) == len(SET)
    assert {a.target for a in SET} == {"davinci-like", "edge-like"}


@pytest.mark.parametrize("adversary", _params())
def test_flagged_for_the_expected_reason(adversary, judged):
    kernel, twin = judged[0][adversary.name]
    assert problem(adversary, kernel, twin) == "", kernel.candidate.to_dict(text=False)


@pytest.mark.parametrize("adversary", SET, ids=[a.name for a in SET])
def test_nearly_right(adversary, judged):
    """The honest twin (the same builder without the cheat) is a result."""
    _, twin = judged[0][adversary.name]
    assert twin.candidate.is_result, twin.candidate.to_dict(text=False)


@pytest.mark.parametrize("name", ["softmax_f32.seed0_sums", "matmul_f16.relu_in_mma"])
def test_parsing_together_is_parsing_each(name, judged):
    """The shared parse gives each kernel what its own sandboxed parse gives."""
    text = next(a for a in SET if a.name == name).kernel().script()
    alone = parse_tvmscript(text)
    assert alone.ok, alone.error
    tvm.ir.assert_structural_equal(alone.module, judged[1][text].module)
