"""Vendor kernels for edge-like: MAC-array GEMM through SPM/ACC and vector kernels in SPM."""

from __future__ import annotations
