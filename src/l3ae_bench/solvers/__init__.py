"""Closed-form solvers by name: the `name` key of a `conf/solver/*.yaml` file picks one."""

from __future__ import annotations

from typing import Any

from l3ae_bench.config import build
from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, SolverSpec
from l3ae_bench.solvers.ease import EASEConfig, fit_ease
from l3ae_bench.solvers.l3ae import L3AEConfig, fit_l3ae

SOLVERS: dict[str, SolverSpec] = {
    "ease": SolverSpec("ease", EASEConfig, fit_ease, uses_embeddings=False),
    "l3ae": SolverSpec("l3ae", L3AEConfig, fit_l3ae, uses_embeddings=True),
}


def parse_solver_config(values: dict[str, Any]) -> tuple[SolverSpec, Any]:
    """Split the `name` key off the solver settings and build the solver's typed config."""
    values = dict(values)
    name = values.pop("name", None)
    if name not in SOLVERS:
        raise ConfigError(
            f"solver.name={name!r} is not a known solver; choose one of {sorted(SOLVERS)}."
        )
    spec = SOLVERS[name]
    return spec, build(spec.config_class, values, "solver")


__all__ = ["SOLVERS", "FitInputs", "SolverSpec", "parse_solver_config"]
