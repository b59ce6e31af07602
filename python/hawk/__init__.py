"""Hawk: LLM-written NPU kernels made correct and fast with hardware-aware knowledge."""

__version__ = "0.1.0"
