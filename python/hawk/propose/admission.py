"""Admission: LLM-written text is hostile input. Everything it says is checked before it
touches TVM, and every refusal is a value with a position, never a crash."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# Python's tokenizer ends a line at \n, \r\n or \r only. str.splitlines also splits at \f,
# \v, \x1c-\x1e, \x85, \u2028 and \u2029, so its line numbers disagree with ast's.
_LINE_END = re.compile(r"\r\n|\r|\n")
_QUOTE = 160  # characters of the offending line quoted around the column


def source_lines(text: str) -> list[str]:
    """The lines of ``text`` as Python's tokenizer (and so ``ast``) numbers them."""
    return _LINE_END.split(text)


def _printable(line: str) -> str:
    """One printable character per character, so the caret still lines up: control
    characters would drive a terminal, and a lone surrogate cannot even be printed."""
    return "".join(c if c.isprintable() else " " if c == "\t" else "\ufffd" for c in line)


@dataclass(frozen=True)
class AdmissionError:
    """Why a proposal was refused, pointing into its text (1-based line and column)."""

    message: str
    line: int = 0
    col: int = 0
    source_line: str = ""  # printable, and a window around the column of a long line
    quote_col: int = 0  # the column within source_line, when it is a window

    def render(self) -> str:
        """The message with the offending line and a caret under the column, compiler-style."""
        if not self.line:
            return self.message
        caret = " " * max(0, (self.quote_col or self.col) - 1) + "^"
        return f"line {self.line}, column {self.col}: {self.message}\n    {self.source_line}\n    {caret}"

    @classmethod
    def at(cls, text: str, message: str, line: int, col: int) -> AdmissionError:
        """At a 1-based line and character column (tokenizer lines, as ``ast`` counts them)."""
        lines = source_lines(text)
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        return cls._quoting(message, line, col, src)

    @classmethod
    def at_node(cls, text: str, message: str, node: ast.AST) -> AdmissionError:
        """At an ``ast`` node, whose ``col_offset`` counts UTF-8 bytes, not characters."""
        line = getattr(node, "lineno", 0)
        lines = source_lines(text)
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        head = src.encode(errors="surrogatepass")[: getattr(node, "col_offset", 0)]
        return cls._quoting(message, line, len(head.decode(errors="ignore")) + 1, src)

    @classmethod
    def at_index(cls, text: str, message: str, index: int) -> AdmissionError:
        """At a 0-based character index into ``text``."""
        before = source_lines(text[:index])
        return cls.at(text, message, len(before), len(before[-1]) + 1)

    @classmethod
    def _quoting(cls, message: str, line: int, col: int, src: str) -> AdmissionError:
        if len(src) <= _QUOTE:
            return cls(message, line, col, _printable(src))
        start = min(max(0, col - 1 - _QUOTE // 2), len(src) - _QUOTE)
        head, tail = "..." * (start > 0), "..." * (start + _QUOTE < len(src))
        window = head + _printable(src[start : start + _QUOTE]) + tail
        return cls(message, line, col, window, col - start + len(head))


def parse_source(text: str) -> tuple[ast.Module | None, AdmissionError | None]:
    """``ast.parse`` whose every failure is an AdmissionError with a position: a syntax
    error, a lone surrogate, or nesting that exhausts the parser (RecursionError,
    MemoryError), which ast reports without one."""
    try:
        return ast.parse(text), None
    except SyntaxError as err:
        if err.lineno is None and "\0" in text:  # reported without a position
            return None, AdmissionError.at_index(text, f"syntax error: {err.msg}", text.index("\0"))
        return None, AdmissionError.at(text, f"syntax error: {err.msg}", err.lineno or 1, err.offset or 1)
    except UnicodeError as err:
        return None, AdmissionError.at_index(text, f"not valid Unicode: {err.reason}", getattr(err, "start", 0))
    except (RecursionError, MemoryError, ValueError, OverflowError) as err:
        message = f"nested too deeply to parse ({type(err).__name__})"
    # Find the line that is too deep on its own; a statement spanning lines gets its first.
    for number, line in enumerate(source_lines(text), 1):
        try:
            ast.parse(line.strip())
        except (RecursionError, MemoryError, ValueError, OverflowError):
            return None, AdmissionError.at(text, message, number, len(line) - len(line.lstrip()) + 1)
        except SyntaxError:
            continue
    return None, AdmissionError.at(text, message, 1, 1)
