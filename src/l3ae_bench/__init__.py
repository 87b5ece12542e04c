"""Benchmark harness for LLM-enhanced linear autoencoders (L3AE) and closed-form baselines."""

__version__ = "0.1.0"
