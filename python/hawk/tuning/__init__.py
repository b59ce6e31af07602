"""Hawk inside MetaSchedule: the NPU builder/runner, the NPU design space and the
MetaSchedule baseline."""

from .measure import ArtifactStore, NpuBuilder, NpuRunner, measure_callbacks
from .metaschedule import MetaScheduleResult, space_generator, tune_metaschedule
from .space import NpuSpace

__all__ = ["ArtifactStore", "MetaScheduleResult", "NpuBuilder", "NpuRunner", "NpuSpace",
           "measure_callbacks", "space_generator", "tune_metaschedule"]
