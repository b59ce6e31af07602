"""Hawk inside TVM: MetaSchedule pieces for the NPU model (builder, runner, design space, the
baseline), the tuning API (tasks of a model into a MetaSchedule database), the compile flow
(the "hawk" Relax pipeline of ``tvm.compile``) and knowledge exported as schedule rules."""

from .compile import CompileOptions, CompileReport, compile_model, pipeline, run, schedule_module
from .database import DatabaseWarning
from .database import load as load_database
from .measure import ArtifactStore, NpuBuilder, NpuRunner, measure_callbacks
from .metaschedule import MetaScheduleResult, space_generator, tune_metaschedule
from .rules import Rules, RulesError, export_rules, load_rules
from .space import NpuSpace
from .tasks import HawkTask, extract_tasks
from .tune import TuneReport, open_database, tune_model, tune_task

__all__ = ["ArtifactStore", "CompileOptions", "CompileReport", "DatabaseWarning", "HawkTask", "MetaScheduleResult",
           "NpuBuilder", "NpuRunner", "NpuSpace", "Rules", "RulesError", "TuneReport", "compile_model",
           "export_rules", "extract_tasks", "load_database", "load_rules", "measure_callbacks", "open_database",
           "pipeline", "run", "schedule_module", "space_generator", "tune_metaschedule", "tune_model", "tune_task"]
