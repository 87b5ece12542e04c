"""Closed-form solvers by name: the `name` key of a `conf/solver/*.yaml` file picks one."""

from __future__ import annotations

from typing import Any

from l3ae_bench.config import build
from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import FitInputs, Fitted, SolverSpec, UserScorer
from l3ae_bench.solvers.bspm import BSPMConfig, fit_bspm
from l3ae_bench.solvers.ease import EASEConfig, fit_ease
from l3ae_bench.solvers.fusions import (
    AdditiveConfig,
    CollectiveConfig,
    fit_additive_ease,
    fit_collective_ease,
    fit_l3ae_additive,
    fit_l3ae_collective,
)
from l3ae_bench.solvers.gfcf import GFCFConfig, fit_gfcf
from l3ae_bench.solvers.l3ae import L3AEConfig, fit_l3ae
from l3ae_bench.solvers.popularity import PopularityConfig, fit_popularity
from l3ae_bench.solvers.sgfcf import SGFCFConfig, fit_sgfcf
from l3ae_bench.solvers.text import CosineConfig, EASETextConfig, fit_cosine, fit_ease_text

_SPECS = [
    # Interactions only.
    SolverSpec("ease", EASEConfig, fit_ease, uses_embeddings=False, torch_backend=True),
    SolverSpec("gfcf", GFCFConfig, fit_gfcf, uses_embeddings=False),
    SolverSpec("popularity", PopularityConfig, fit_popularity, uses_embeddings=False),
    SolverSpec("bspm", BSPMConfig, fit_bspm, uses_embeddings=False),
    SolverSpec("sgfcf", SGFCFConfig, fit_sgfcf, uses_embeddings=False),
    # Item embeddings only.
    SolverSpec(
        "ease_text", EASETextConfig, fit_ease_text, uses_embeddings=True, uses_interactions=False
    ),
    SolverSpec("cosine", CosineConfig, fit_cosine, uses_embeddings=True, uses_interactions=False),
    # Interactions with word counts of the item texts.
    SolverSpec(
        "collective_ease",
        CollectiveConfig,
        fit_collective_ease,
        uses_embeddings=False,
        uses_texts=True,
        torch_backend=True,
    ),
    SolverSpec(
        "additive_ease",
        AdditiveConfig,
        fit_additive_ease,
        uses_embeddings=False,
        uses_texts=True,
        torch_backend=True,
    ),
    # Interactions with item embeddings.
    SolverSpec("l3ae", L3AEConfig, fit_l3ae, uses_embeddings=True, torch_backend=True),
    SolverSpec(
        "l3ae_collective",
        CollectiveConfig,
        fit_l3ae_collective,
        uses_embeddings=True,
        torch_backend=True,
    ),
    SolverSpec(
        "l3ae_additive", AdditiveConfig, fit_l3ae_additive, uses_embeddings=True, torch_backend=True
    ),
]
SOLVERS: dict[str, SolverSpec] = {spec.name: spec for spec in _SPECS}


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


__all__ = ["SOLVERS", "FitInputs", "Fitted", "SolverSpec", "UserScorer", "parse_solver_config"]
