"""Admission: LLM-written text is hostile input. Everything it says is checked before it
touches TVM, and every refusal is a value with a position, never a crash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AdmissionError:
    """Why a proposal was refused, pointing into its text (1-based line and column)."""

    message: str
    line: int = 0
    col: int = 0
    source_line: str = ""

    def render(self) -> str:
        """The message with the offending line and a caret under the column, compiler-style."""
        if not self.line:
            return self.message
        caret = " " * max(0, self.col - 1) + "^"
        return f"line {self.line}, column {self.col}: {self.message}\n    {self.source_line}\n    {caret}"

    @classmethod
    def at(cls, text: str, message: str, line: int, col: int) -> AdmissionError:
        lines = text.splitlines()
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        return cls(message, line, col, src)
