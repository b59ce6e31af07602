"""Model files: a Python file that defines the model a user tunes or compiles.

A model file defines ``model()`` returning ``(mod, inputs)``: a Relax IRModule (or an
IRModule of PrimFuncs) and a dict of named numpy inputs for its ``main``; optionally
``reference(inputs)``, the expected output in numpy. ``examples/llama_block.py`` and
``examples/small_cnn.py`` are two. The file is the user's own code and runs as Python
(like any model script); nothing an LLM wrote is ever loaded this way.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path


class ModelError(ValueError):
    """A model file that cannot be used; the message says why."""


@dataclass
class ModelFile:
    path: Path
    mod: object
    inputs: dict
    reference: object | None  # callable(inputs) -> numpy array, or None


def load_model(path: str | Path) -> ModelFile:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    name = f"hawk_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"{path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        if not callable(getattr(module, "model", None)):
            raise ModelError(f"{path}: defines no model() returning (mod, inputs)")
        built = module.model()
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - the user's file failed: say where
        raise ModelError(f"{path}: {type(err).__name__}: {err}") from None
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[1], dict)):
        raise ModelError(f"{path}: model() must return (mod, inputs), inputs a dict of numpy arrays")
    return ModelFile(path, built[0], built[1], getattr(module, "reference", None))
