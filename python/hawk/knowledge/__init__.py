"""Hardware-aware knowledge: triples, the store, synthesis, 2D retrieval."""

from .store import Application, KnowledgeStore, StoreError, read_export
from .triple import (
           Context,
           Executable,
           Provenance,
           Semantics,
           Stats,
           Triple,
           TripleError,
)

__all__ = ["Application", "Context", "Executable", "KnowledgeStore", "Provenance", "Semantics", "Stats",
           "StoreError", "Triple", "TripleError", "read_export"]
