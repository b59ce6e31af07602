"""MetaSchedule builder and runner backed by the NPU runtime model.

The builder is the NPU compiler: it verifies each candidate and rejects an illegal one with
its device log (MetaSchedule records it as a failed build, which XGBModel learns as
infinitely slow). The runner is the device: it times the legal candidates on the pipe
simulator and reports simulated cycles as seconds at a nominal clock. Artifacts stay in
memory: nothing is written to disk, so MetaSchedule's build-directory cleanup must be left
out of the measure callbacks (see ``MEASURE_CALLBACKS``).
"""

from __future__ import annotations

import itertools
import threading

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ..npu.spec import HardwareSpec
from ..runtime.timing import SimulatorError, time_kernel
from ..runtime.verify import verify
from ..search.gate import gate

CLOCK_HZ = 1e9  # run_secs = cycles / CLOCK_HZ; only ratios matter to MetaSchedule

ARTIFACT_PREFIX = "hawk-npu-artifact:"


def measure_callbacks() -> list:
    """MetaSchedule's default callbacks minus RemoveBuildArtifact (artifacts are not files)."""
    return [ms.measure_callback.AddToDatabase(), ms.measure_callback.UpdateCostModel()]


class ArtifactStore:
    """Legal candidates between build and run, keyed by an artifact path that is not a file."""

    def __init__(self):
        self._modules = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.built = 0  # candidates the builder saw
        self.legal = 0  # of those, the ones verify passed

    def put(self, mod) -> str:
        with self._lock:
            key = f"{ARTIFACT_PREFIX}{next(self._ids)}"
            self._modules[key] = mod
            return key

    def take(self, key: str):
        with self._lock:
            return self._modules.pop(key, None)


@derived_object
class NpuBuilder(ms.builder.PyBuilder):
    """Verify on the NPU model; an illegal candidate is a build error carrying its faults."""

    def __init__(self, spec: HardwareSpec, store: ArtifactStore):
        super().__init__()
        self.spec = spec
        self.store = store

    def build(self, build_inputs: list) -> list:
        return [self._build_one(item.mod) for item in build_inputs]

    def _build_one(self, mod):
        self.store.built += 1
        try:
            faults = verify(mod, self.spec)
        except Exception as err:  # noqa: BLE001 -- one candidate's failure is a value
            return ms.builder.BuilderResult(None, f"verify failed: {type(err).__name__}: {err}")
        if faults:
            return ms.builder.BuilderResult(None, "\n".join(f.log for f in faults))
        self.store.legal += 1
        return ms.builder.BuilderResult(self.store.put(mod), None)


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    def __init__(self, result):
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self):
        return self._result


@derived_object
class NpuRunner(ms.runner.PyRunner):
    """Time each built candidate on the pipe simulator (deterministic: one run is enough).

    Given the workload (and a reference's cycles), a time the gate flags -- beyond the
    roofline, or more than 10x the reference -- is a failed run, so a model bug cannot
    steer MetaSchedule's cost model and search towards itself."""

    def __init__(self, spec: HardwareSpec, store: ArtifactStore, *, workload=None,
                 reference_cycles: int | None = None):
        super().__init__()
        self.spec = spec
        self.store = store
        self.workload = workload
        self.reference_cycles = reference_cycles

    def run(self, runner_inputs: list) -> list:
        return [_Done(self._run_one(item.artifact_path)) for item in runner_inputs]

    def _run_one(self, path: str):
        mod = self.store.take(path)
        if mod is None:
            return ms.runner.RunnerResult(None, f"unknown artifact {path!r}")
        try:
            profile = time_kernel(mod, self.spec, self.workload)
        except SimulatorError as err:
            return ms.runner.RunnerResult(None, f"simulator: {err}")
        except Exception as err:  # noqa: BLE001
            return ms.runner.RunnerResult(None, f"timing failed: {type(err).__name__}: {err}")
        verdict = gate(cycles=profile.cycles, roofline_cycles=profile.roofline_cycles,
                       reference_cycles=self.reference_cycles, model_bug=profile.model_bug)
        if verdict.status != "ok":
            return ms.runner.RunnerResult(None, f"flagged for review: {verdict.reason}")
        return ms.runner.RunnerResult([profile.cycles / CLOCK_HZ], None)
