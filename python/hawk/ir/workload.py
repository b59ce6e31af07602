"""Workloads: an operator to generate a kernel for, with its inputs and its reference.

A workload's PrimFunc takes its inputs first and its outputs last (the order of
``te.create_prim_func``). Inputs come from per-input generators (seeded, non-zero mean
by default), reshaped by a value profile (``PROFILES``: negative, large, small, ...); the
reference is independent of any kernel under test: a numpy function, or, when none is
given, the unscheduled PrimFunc built for the host.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import tvm
from tvm import te, tirx

Generator = Callable[[np.random.Generator, tuple[int, ...], str], np.ndarray]
Reference = Callable[..., "np.ndarray | Sequence[np.ndarray]"]

CATEGORIES = (
    "matmul", "conv", "elementwise", "broadcast", "reduction", "softmax", "norm",
    "pooling", "layout", "loss", "gather", "fused",
)


class WorkloadError(ValueError):
    """A workload (or workload file) that cannot be used; the message says why."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


def np_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of a TVM dtype name (bfloat16 through ml_dtypes, as TVM does)."""
    return np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)


def normal_inputs(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Default generator: non-zero mean so that sign and offset errors show."""
    if dtype.startswith(("int", "uint")):
        lo, hi = (0, 8) if dtype.startswith("uint") else (-6, 10)
        return rng.integers(lo, hi, size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    return rng.normal(0.5, 1.0, size=shape).astype(np_dtype(dtype))


def positive_inputs(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return rng.uniform(0.5, 2.0, size=shape).astype(np_dtype(dtype))


def is_float(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat"))


@dataclass(frozen=True)
class Profile:
    """A value profile: how one input of a trial differs from its generator's values.

    A profile shapes one input, its target: the first float input, the data, which the
    operators take first (activations, logits, the tensor a norm normalises); for
    ``fp16_only``, a float16 input (``targets``: the candidates in order; execute picks
    one). The other inputs (weights, gains, tables) keep their generators' values, as in
    a model: scaling every input would multiply magnitudes, and rounding, by the scale
    once per input and turn a softmax over Q K^T into an argmax no float32 kernel matches.

    ``reshape`` (sign, zeros, spread) applies to the default generator's values; a
    workload's own generator is its input domain (positive for a log, a mask), so its
    values are only multiplied by positive factors, which keep signs and zeros: the scale,
    and a reshape that ``keeps_sign``. The scale is 2**e, e in ``exponents`` (lo, hi);
    execute takes the largest e at which the reference stays finite. Integer and boolean
    inputs never change (indices stay valid)."""

    name: str
    what: str
    reshape: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    exponents: tuple[int, int] = (0, 0)
    fp16_only: bool = False
    keeps_sign: bool = False

    def targets(self, dtypes: Sequence[str]) -> list[int]:
        """The indices of the inputs this profile may shape, in the order to try them."""
        if self.fp16_only:
            return [i for i, d in enumerate(dtypes) if d == "float16"]
        return [i for i, d in enumerate(dtypes) if is_float(d)][:1]

    def changes(self, *, own: bool) -> bool:
        """Whether the profile changes its target (``own``: from the workload's generator)."""
        return self.exponents != (0, 0) or self._reshapes(own)

    def _reshapes(self, own: bool) -> bool:
        return self.reshape is not None and (self.keeps_sign or not own)

    def apply(self, values: np.ndarray, rng: np.random.Generator, *, own: bool, exponent: int) -> np.ndarray:
        if not self.changes(own=own):
            return values
        x = values.astype(np.float64)
        if self._reshapes(own):
            x = self.reshape(x, rng)  # draws from rng whatever the exponent, so only the scale varies
        return (x * 2.0 ** exponent).astype(values.dtype)


PROFILES = (
    Profile("normal", "the generators' values (non-zero-mean normal by default)"),
    Profile("negative", "the data input all negative", reshape=lambda x, rng: -np.abs(x)),
    Profile("large", "the data input x2^6, or less where the reference would overflow", exponents=(0, 6)),
    Profile("small", "the data input x2^-8", exponents=(-8, -8)),
    # near the float16 overflow of what the kernel computes, not just of its inputs
    Profile("near_overflow", "the first float16 input that brings an output near overflow, x2^e, the largest "
            "e <= 15 at which the reference stays finite (unscaled if no input does)", exponents=(0, 15),
            fp16_only=True),
    Profile("sparse", "three in four values of the data input exactly zero",
            reshape=lambda x, rng: np.where(rng.random(x.shape) < 0.75, 0.0, x)),
    # mostly positive (the normal's mean), so a sum of wide values does not cancel to ~0
    Profile("wide", "the data input's magnitudes spread over 2^-3..2^3 (x2^e <= 1 where the reference would overflow)",
            reshape=lambda x, rng: x * np.exp2(rng.uniform(-3.0, 3.0, x.shape)), exponents=(-6, 0), keeps_sign=True),
)
PROFILE = {p.name: p for p in PROFILES}


@dataclass(frozen=True)
class Workload:
    """An operator instance: name, category, PrimFunc, input generators and reference.

    ``op`` names the operator family (the reference library is keyed by it); ``model``
    the network the shapes come from; ``n_outputs`` how many trailing params are outputs.
    """

    name: str
    category: str
    func: tirx.PrimFunc
    op: str = ""
    model: str = ""
    n_outputs: int = 1
    generators: tuple[Generator | None, ...] = ()
    reference: Reference | None = None
    source: str = ""
    attrs: dict = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise WorkloadError(f"workload name {self.name!r}: use letters, digits, '-', '_' or '.'")
        if self.category not in CATEGORIES:
            raise WorkloadError(
                f"workload {self.name}: unknown category {self.category!r} (known: {', '.join(CATEGORIES)})"
            )
        if not isinstance(self.func, tirx.PrimFunc):
            raise WorkloadError(f"workload {self.name}: func must be a PrimFunc, got {type(self.func).__name__}")
        n = len(self.func.params)
        if not 1 <= self.n_outputs <= n:
            raise WorkloadError(f"workload {self.name}: n_outputs={self.n_outputs} with {n} params")
        if self.generators and len(self.generators) != len(self.inputs):
            raise WorkloadError(
                f"workload {self.name}: {len(self.generators)} generators for {len(self.inputs)} inputs"
            )
        for t in self.params:
            if any(d <= 0 for d in t.shape):
                raise WorkloadError(f"workload {self.name}: param {t.name} has shape {t.shape}")

    @property
    def params(self) -> tuple[TensorSpec, ...]:
        return tuple(param_specs(self.func))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.params[: len(self.func.params) - self.n_outputs]

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.params[len(self.func.params) - self.n_outputs:]

    @property
    def profiles(self) -> tuple[Profile, ...]:
        """The value profiles that change this workload's inputs (normal first)."""
        gens = self.generators or (None,) * len(self.inputs)
        dtypes = [t.dtype for t in self.inputs]
        return tuple(p for p in PROFILES if p.name == "normal"
                     or any(p.changes(own=gens[i] is not None) for i in p.targets(dtypes)))

    def make_inputs(self, seed: int, profile: str = "normal", exponent: int | None = None,
                    target: int | None = None) -> list[np.ndarray]:
        """Seeded inputs under a value profile, its target (default: the first candidate)
        scaled by 2**exponent (default: the profile's largest)."""
        prof = PROFILE[profile]
        e = prof.exponents[1] if exponent is None else exponent
        if target is None:
            target = next(iter(prof.targets([t.dtype for t in self.inputs])), None)
        rng = np.random.default_rng(seed)
        gens = self.generators or (None,) * len(self.inputs)
        out = []
        for i, (t, gen) in enumerate(zip(self.inputs, gens)):
            arr = np.asarray((gen or normal_inputs)(rng, t.shape, t.dtype))
            if arr.shape != t.shape or str(arr.dtype) != t.dtype:
                raise WorkloadError(
                    f"workload {self.name}: generator for {t.name} gave {arr.dtype}{list(arr.shape)}, "
                    f"expected {t.dtype}{list(t.shape)}"
                )
            out.append(prof.apply(arr, rng, own=gen is not None, exponent=e) if i == target else arr)
        return out

    def module(self) -> tvm.IRModule:
        """A fresh module of the function: scheduling it must not touch this workload
        (s_tir.Schedule rewrites statements it shares with the original in place)."""
        func = tvm.ir.load_json(tvm.ir.save_json(self.func))
        return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})

    def summary(self) -> dict:
        return {
            "name": self.name,
            "category": self.category,
            "op": self.op,
            "model": self.model,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "source": self.source,
        }


def param_specs(func: tirx.PrimFunc) -> list[TensorSpec]:
    specs = []
    for buf in func.params:  # TVM 0.27: params are buffer vars
        if not hasattr(buf, "shape"):
            raise WorkloadError(f"param {buf} is not a buffer")
        shape = []
        for d in buf.shape:
            if not isinstance(d, tirx.IntImm):
                raise WorkloadError(f"param {buf.name} has a symbolic shape; workloads are static")
            shape.append(int(d))
        specs.append(TensorSpec(buf.name, tuple(shape), str(buf.dtype)))
    return specs


def from_te(
    name: str,
    category: str,
    tensors: Sequence[te.Tensor],
    *,
    op: str = "",
    model: str = "",
    n_outputs: int = 1,
    generators: Sequence[Generator | None] = (),
    reference: Reference | None = None,
    **attrs,
) -> Workload:
    """A workload from TE tensors: inputs first, outputs last."""
    func = te.create_prim_func(list(tensors))
    return Workload(name=name, category=category, func=func, op=op or name, model=model,
                    n_outputs=n_outputs, generators=tuple(generators), reference=reference,
                    attrs=dict(attrs))
