"""Settings of a hyperparameter search (`conf/search/*.yaml`) and the search space they define.

The search space comes from the solver's config class: every field declared with
`hyperparameter(default, low, high, log)` is tuned over its declared range, unless the search
settings fix it (`search.fixed`, or a `solver.<field>=...` override on the command line) or
narrow its range (`search.ranges`).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from l3ae_bench.config import build
from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers.base import SearchRange, search_space

SEARCH_MODES = ("none", "optuna")
SAMPLERS = ("tpe", "random", "cmaes", "qmc", "gp")
DIRECTIONS = ("maximize", "minimize")
OBJECTIVE_PATTERN = re.compile(r"^val/(recall|ndcg)_at_(\d+)$")
SOLVER_OVERRIDE = re.compile(r"^\+{0,2}solver\.(\w+)=")


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameter search of one job."""

    name: str = "none"
    """`none` fits the solver once with the values under `solver`; `optuna` runs a study."""
    n_trials: int = 50
    """Trials of the study in total, over reruns and workers. COMPLETE, FAIL and PRUNED trials
    count, so a rerun after a kill runs only the missing ones."""
    timeout_s: float | None = None
    """Seconds after which this process starts no new trial; null: no limit."""
    objective: str = "val/ndcg_at_20"
    """Validation metric the study optimizes, `val/recall_at_K` or `val/ndcg_at_K` with K in
    `evaluation.k`."""
    direction: str = "maximize"
    """Whether the objective is maximized or minimized."""
    sampler: str = "tpe"
    """Optuna sampler: tpe (multivariate, constant liar), random, cmaes, qmc or gp."""
    seed: int | None = 0
    """Base seed of the sampler; trial n samples with seed + n, so reruns and parallel workers
    never repeat a draw. null: unseeded."""
    n_startup_trials: int = 10
    """Random trials before the tpe, cmaes or gp model takes over."""
    storage: str | None = None
    """Optuna storage: an SQLAlchemy URL (`sqlite:////abs/optuna.db`, `postgresql://...`) or
    `journal:/abs/file.log` for a journal file shared by processes. null: the SQLite file
    `optuna/optuna.db` under `paths.root`."""
    study_name: str | None = None
    """Study name; null derives `<dataset>/<encoder>/<solver>[/<fixed>...][/<suffix>]`."""
    study_suffix: str = ""
    """Appended to the derived study name, to start a fresh study for the same job."""
    fixed: list[str] = field(default_factory=list)
    """Solver settings kept at their `solver.<name>` value instead of being searched."""
    fixed_on_command_line: list[str] = field(default_factory=list)
    """Solver settings overridden on the command line (`solver.lambda_f=5`), filled in by
    `src/run.py`; the tunable ones among them are kept fixed like `fixed`."""
    ranges: dict[str, Any] = field(default_factory=dict)
    """Overrides of declared search ranges, such as `{lambda_x: {low: -50, high: 200}}`."""
    parent_run_id: str | None = None
    """MLflow run that trials nest under, for workers joining a study; null: the run stored
    with the study, or a new job run."""
    reuse_best_weights: bool = True
    """Keep B of the best trial fitted by this process in memory, instead of refitting it for
    the test metrics (costs one items × items matrix)."""
    heartbeat_s: float = 30.0
    """Seconds between the heartbeats a running trial writes to the storage."""
    stale_after_s: float = 300.0
    """A RUNNING trial of another host whose heartbeat is older than this is marked FAIL. On
    the same host, a trial whose process has ended is marked FAIL at once."""

    def __post_init__(self) -> None:
        if self.name not in SEARCH_MODES:
            raise ConfigError(f"search.name must be one of {SEARCH_MODES}, got {self.name!r}.")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"search.sampler must be one of {SAMPLERS}, got {self.sampler!r}.")
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"search.direction must be one of {DIRECTIONS}, got {self.direction!r}."
            )
        if self.n_trials < 1:
            raise ConfigError(f"search.n_trials must be ≥ 1, got {self.n_trials}.")
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ConfigError(f"search.timeout_s must be > 0 or null, got {self.timeout_s}.")
        if not OBJECTIVE_PATTERN.match(self.objective):
            raise ConfigError(
                f"search.objective must be a validation metric such as val/ndcg_at_20 or "
                f"val/recall_at_10, got {self.objective!r}. Tuning on test metrics would leak "
                "the test set into model selection."
            )
        if self.heartbeat_s <= 0 or self.stale_after_s <= self.heartbeat_s:
            raise ConfigError(
                f"search.heartbeat_s must be > 0 and below search.stale_after_s, got "
                f"{self.heartbeat_s} and {self.stale_after_s}."
            )

    @property
    def enabled(self) -> bool:
        return self.name != "none"

    @property
    def objective_k(self) -> int:
        """The cut-off K of the objective metric."""
        return int(OBJECTIVE_PATTERN.match(self.objective).group(2))  # type: ignore[union-attr]


@dataclass(frozen=True)
class Parameter:
    """One searched solver setting and its range."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool


def parse_search_config(values: Mapping[str, Any] | None) -> SearchConfig:
    """Validate the `search` section; a missing section means no search."""
    return build(SearchConfig, dict(values or {}), "search")


def resolve_space(config_class: type, search: SearchConfig) -> dict[str, Parameter]:
    """Return the parameters to search: declared ranges, less fixed ones, with overrides."""
    declared = search_space(config_class)
    unknown = sorted((set(search.fixed) | set(search.ranges)) - set(declared))
    fixed = fixed_names(config_class, search)
    if unknown:
        raise ConfigError(
            f"search.fixed or search.ranges name {unknown}, which {config_class.__name__} "
            f"does not declare as tunable; its tunable settings are {sorted(declared)}."
        )
    hints = typing.get_type_hints(config_class)
    space = {}
    for name, declared_range in declared.items():
        if name in fixed:
            continue
        override = search.ranges.get(name) or {}
        if not isinstance(override, Mapping):
            raise ConfigError(
                f"search.ranges.{name} must be a mapping with low, high and log, got {override!r}."
            )
        merged = build(
            SearchRange, {**dataclasses.asdict(declared_range), **override}, f"search.ranges.{name}"
        )
        space[name] = _checked_parameter(name, merged, hints.get(name) is int)
    if not space:
        raise ConfigError(
            f"Every tunable setting of {config_class.__name__} ({sorted(declared)}) is fixed, so "
            "there is nothing to search; drop one from search.fixed or use search=none."
        )
    return space


def fixed_names(config_class: type, search: SearchConfig) -> list[str]:
    """Return the tunable settings that the search keeps at their configured value."""
    declared = search_space(config_class)
    return sorted((set(search.fixed) | set(search.fixed_on_command_line)) & set(declared))


def _checked_parameter(name: str, searched: SearchRange, integer: bool) -> Parameter:
    if not searched.low < searched.high:
        raise ConfigError(
            f"search.ranges.{name}: low must be below high, got [{searched.low}, {searched.high}]."
        )
    if searched.log and searched.low <= 0:
        raise ConfigError(
            f"search.ranges.{name}: a log-scale range needs low > 0, got {searched.low}; set "
            f"search.ranges.{name}.log=false or raise the lower bound."
        )
    return Parameter(name, searched.low, searched.high, searched.log, integer)


def fixed_from_overrides(overrides: Iterable[str]) -> list[str]:
    """Return the solver settings set on the command line (`solver.lambda_f=5` → lambda_f)."""
    names = []
    for override in overrides:
        matched = SOLVER_OVERRIDE.match(override)
        if matched and matched.group(1) != "name":
            names.append(matched.group(1))
    return sorted(set(names))


def derive_study_name(
    search: SearchConfig, dataset: str, encoder: str, solver: str, fixed: Mapping[str, Any]
) -> str:
    """Return the study name: `<dataset>/<encoder>/<solver>[/<name>=<value>...][/<suffix>]`.

    Fixed settings are part of the name, so jobs of a sweep over a fixed value (such as
    `solver.lambda_f=1,10`) get separate studies.
    """
    if search.study_name:
        return search.study_name
    parts = [dataset, encoder, solver]
    parts += [f"{name}={_format_value(value)}" for name, value in sorted(fixed.items())]
    if search.study_suffix:
        parts.append(search.study_suffix)
    return "/".join(parts)


def _format_value(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
