"""The fault manual shared by the presets: every code the runtime model can raise.

A spec file may omit ``faults``; it then gets this manual. Descriptions are written the
way a device manual states a fault: what the hardware observed, never how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FaultCode:
    """One entry of the device's fault manual."""

    code: str
    id: str
    text: str

SCOPE_OVERFLOW = "SCOPE_OVERFLOW"
ILLEGAL_PATH = "ILLEGAL_PATH"
UNIT_SCOPE = "UNIT_SCOPE"
DMA_MISALIGN = "DMA_MISALIGN"
DMA_DISCONTIG = "DMA_DISCONTIG"
FRACTAL_MISMATCH = "FRACTAL_MISMATCH"
UNIT_DTYPE = "UNIT_DTYPE"
OUT_OF_BOUNDS = "OUT_OF_BOUNDS"
UNKNOWN_INSTR = "UNKNOWN_INSTR"
MALFORMED_IR = "MALFORMED_IR"

STANDARD_MANUAL: tuple[FaultCode, ...] = (
    FaultCode(SCOPE_OVERFLOW, "0x0A01", "Local memory allocation exceeds the physical size of the scope."),
    FaultCode(ILLEGAL_PATH, "0x0A02", "DMA instruction issued between two scopes that have no data path."),
    FaultCode(UNIT_SCOPE, "0x0A03", "Instruction operand resides in a scope the executing unit cannot access."),
    FaultCode(DMA_MISALIGN, "0x0A04", "DMA burst address or length is not a multiple of the scope access granularity."),
    FaultCode(DMA_DISCONTIG, "0x0A05", "DMA burst element stride is not 1 on one side of the transfer."),
    FaultCode(FRACTAL_MISMATCH, "0x0A06", "Tile in a fractal-organised scope is not made of whole fractals."),
    FaultCode(UNIT_DTYPE, "0x0A07", "Data type is not supported by the executing unit."),
    FaultCode(OUT_OF_BOUNDS, "0x0A08", "Access outside the extent of the buffer."),
    FaultCode(UNKNOWN_INSTR, "0x0A09", "Instruction is not part of this core's instruction set."),
    FaultCode(MALFORMED_IR, "0x0A0A", "Kernel image could not be decoded."),
)

CODES: tuple[str, ...] = tuple(f.code for f in STANDARD_MANUAL)
