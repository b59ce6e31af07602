"""Device-style faults: what the NPU observed, where, and nothing about how to fix it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fault:
    """One fault as an NPU would report it.

    ``pipe`` is the pipe or unit that raised it, ``block`` the instruction (TensorIR
    block), ``buffer``/``scope`` the memory involved, ``address`` a byte range
    ``[lo, hi)`` in that scope where one applies, and ``observed`` the numbers seen.
    """

    code: str
    id: str
    pipe: str
    block: str
    buffer: str = ""
    scope: str = ""
    address: tuple[int, int] | None = None
    observed: tuple[tuple[str, Any], ...] = ()

    @property
    def log(self) -> str:
        parts = [f"[NPU] ERROR {self.id} {self.code}", f"pipe={self.pipe}", f"block={self.block}"]
        if self.buffer:
            parts.append(f"buffer={self.buffer}")
        if self.scope:
            parts.append(f"scope={self.scope}")
        if self.address is not None:
            parts.append(f"addr=[{self.address[0]:#x},{self.address[1]:#x})")
        parts += [f"{k}={v}" for k, v in self.observed]
        return " ".join(parts)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.observed).get(key, default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "id": self.id,
            "pipe": self.pipe,
            "block": self.block,
            "buffer": self.buffer,
            "scope": self.scope,
            "address": list(self.address) if self.address is not None else None,
            "observed": {k: v for k, v in self.observed},
            "log": self.log,
        }
