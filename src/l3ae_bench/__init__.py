"""Benchmark harness for LLM-enhanced linear autoencoders (L3AE) and closed-form baselines."""

import os

OPENBLAS_THREAD_TIMEOUT = "24"
"""How long idle OpenBLAS worker threads spin before they sleep: 2^24 cycles, a few milliseconds.

OpenBLAS's own default is 2^28 cycles, about 0.1 s. The fits run threaded NumPy passes between
their BLAS calls: building G, mirroring the inverse and scaling its columns. Spinning workers
take the cores from these passes. Mirroring the Games inverse took 51 ms right after potri, and
37 ms on idle cores. The calls inside potrf and potri follow each other within microseconds, so the
shorter timeout leaves them as fast as before. OpenBLAS reads the variable when it is loaded, so
it applies when l3ae_bench is imported before scipy.linalg; a value set by the user is kept."""

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)

__version__ = "0.1.0"
