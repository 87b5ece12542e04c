"""Benchmark harness for LLM-enhanced linear autoencoders (L3AE) and closed-form baselines."""

import os

OPENBLAS_THREAD_TIMEOUT = "24"
"""Spin time of idle OpenBLAS worker threads before they sleep, as a power of two of CPU cycles.

2^24 cycles is about 6.5 ms at 2.6 GHz. With OpenBLAS's default, the workers kept spinning for
about 0.1 s after a call, as measured by their CPU time. The fits run threaded NumPy passes
between their BLAS calls: building G, mirroring the inverse and scaling its columns. Spinning
workers take the cores from these passes. Mirroring an 8,330 × 8,330 matrix right after a BLAS call
took 51 ms, and 37 ms on idle cores. The potrf + potri bound of the benchmark took the same time
with and without this setting. OpenBLAS reads the variable when it is loaded, so it applies when
l3ae_bench is imported before scipy.linalg. A value set by the user is kept."""

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)

__version__ = "0.1.0"
