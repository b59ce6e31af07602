"""The README's Python examples run as written (in a fresh directory, as a user would)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _examples(section: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, flags=re.DOTALL)


def test_the_tvm_section_has_an_example_per_entry_point():
    code = "\n".join(_examples("Inside TVM"))
    for entry in ("tune_model", 'relax_pipeline="hawk"', "export_rules", "ms.tune_tir"):
        assert entry in code


def test_the_tvm_examples_run(tmp_path):
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for n, code in enumerate(_examples("Inside TVM")):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            pytest.fail(f"example {n + 1} failed:\n{done.stderr[-3000:]}")
