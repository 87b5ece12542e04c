"""Comparison report of an MLflow experiment: best test metrics per dataset × solver × encoder.

Rows: for each dataset × solver × encoder, one job run (a finished top-level run). When the
group has tuned runs (`search=optuna`), the row is the tuned run with the best validation
objective, and its test metrics are those of its study's best trial. Otherwise the row is the
untuned run with the best validation objective. Test metrics never decide which run is shown.

Baseline: per dataset, the best row (by the validation objective) whose solver reads no item
text (tag `solver.uses_text=false`, such as EASE), or the best row among `baseline_solvers`
when those are given. Every other row of the dataset is compared with it by a paired test
across users (Student's t on paired samples, or Wilcoxon signed-rank) on the per-user test
metrics in the runs' `per_user/test.npz` artifacts, aligned by `user_index`. p-values are not
corrected for multiple comparisons.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from l3ae_bench.errors import ConfigError
from l3ae_bench.solvers import SOLVERS
from l3ae_bench.tracking import load_artifact_arrays

log = logging.getLogger(__name__)

TEST_METRIC = re.compile(r"^test/(recall|ndcg)_at_(\d+)$")
SIGNIFICANCE_TESTS = ("ttest", "wilcoxon")
EXCLUDED_KINDS = ("trial", "report")
NO_ENCODER = "–"
METRIC_ORDER = {"recall": 0, "ndcg": 1}


@dataclass(frozen=True)
class Entry:
    """One row of the comparison: the chosen job run of a dataset × solver × encoder."""

    dataset: str
    solver: str
    encoder: str
    run_id: str
    tuned: bool
    uses_text: bool
    metrics: Mapping[str, float]
    n_trials: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.encoder == NO_ENCODER:
            return self.solver
        return f"{self.solver} · {self.encoder}"


@dataclass(frozen=True)
class Comparison:
    """Paired test of one row against its dataset's baseline, per test metric."""

    p_values: dict[str, float]
    """p-value per metric key; NaN when the test is undefined (identical vectors)."""
    n_users: int
    """Users present in both runs' per-user vectors."""


def select_entries(runs: Iterable[Any], objective: str) -> list[Entry]:
    """Pick one job run per dataset × solver × encoder (see the module docstring)."""
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for run in runs:
        if not _is_finished_job(run, objective):
            continue
        tags = run.data.tags
        # A solver that reads no text gives the same result with every encoder.
        encoder = tags.get("encoder", "?") if _uses_text(run) else NO_ENCODER
        key = (tags.get("dataset", "?"), tags.get("solver", "?"), encoder)
        groups.setdefault(key, []).append(run)
    entries = []
    for (dataset, solver, encoder), members in sorted(groups.items()):
        tuned = [run for run in members if run.data.tags.get("search", "none") != "none"]
        pool = tuned or members
        best = max(pool, key=lambda run: run.data.metrics[objective])
        n_trials = best.data.metrics.get("study/n_trials")
        entries.append(
            Entry(
                dataset=dataset,
                solver=solver,
                encoder=encoder,
                run_id=best.info.run_id,
                tuned=bool(tuned),
                uses_text=_uses_text(best),
                metrics=dict(best.data.metrics),
                n_trials=None if n_trials is None else int(n_trials),
                params=dict(best.data.params),
            )
        )
    return entries


def _is_finished_job(run: Any, objective: str) -> bool:
    tags = run.data.tags
    return (
        run.info.status == "FINISHED"
        and "mlflow.parentRunId" not in tags
        and tags.get("l3ae_bench.kind", "job") not in EXCLUDED_KINDS
        and objective in run.data.metrics
        and any(TEST_METRIC.match(key) for key in run.data.metrics)
    )


def _uses_text(run: Any) -> bool:
    tag = run.data.tags.get("solver.uses_text")
    if tag in ("true", "false"):
        return tag == "true"
    spec = SOLVERS.get(run.data.tags.get("solver", ""))
    return True if spec is None else bool(getattr(spec, "uses_text", spec.uses_embeddings))


def pick_baselines(
    entries: Sequence[Entry], objective: str, baseline_solvers: Sequence[str] | None = None
) -> dict[str, Entry]:
    """Return each dataset's baseline row; datasets without a candidate get none."""
    baselines: dict[str, Entry] = {}
    for entry in entries:
        if baseline_solvers is not None:
            eligible = entry.solver in baseline_solvers
        else:
            eligible = not entry.uses_text
        current = baselines.get(entry.dataset)
        if eligible and (current is None or entry.metrics[objective] > current.metrics[objective]):
            baselines[entry.dataset] = entry
    return baselines


def available_test_metrics(entries: Iterable[Entry]) -> list[str]:
    """Return the test Recall@K and NDCG@K keys present in any entry: Recall first, then by K."""
    keys = {key for entry in entries for key in entry.metrics if TEST_METRIC.match(key)}
    return sorted(keys, key=_metric_order)


def _metric_order(key: str) -> tuple[int, int]:
    matched = TEST_METRIC.match(key)
    assert matched is not None
    return METRIC_ORDER[matched.group(1)], int(matched.group(2))


class PerUserStore:
    """Per-user test metric vectors of runs, downloaded once per run."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._cache: dict[str, dict[str, np.ndarray] | None] = {}

    def get(self, run_id: str) -> dict[str, np.ndarray] | None:
        if run_id not in self._cache:
            try:
                self._cache[run_id] = load_artifact_arrays(
                    self.tracking_uri, run_id, "per_user/test.npz"
                )
            except (OSError, ValueError) as error:
                log.warning("No per_user/test.npz for run %s: %s", run_id, error)
                self._cache[run_id] = None
        return self._cache[run_id]


def compare(
    entry: Entry, baseline: Entry, metrics: Sequence[str], store: PerUserStore, test: str
) -> Comparison | None:
    """Run the paired test of `entry` against `baseline` on each metric's per-user vector."""
    if test not in SIGNIFICANCE_TESTS:
        raise ConfigError(f"--test must be one of {SIGNIFICANCE_TESTS}, got {test!r}.")
    ours, theirs = store.get(entry.run_id), store.get(baseline.run_id)
    if ours is None or theirs is None:
        return None
    _, ours_rows, theirs_rows = np.intersect1d(
        ours["user_index"], theirs["user_index"], return_indices=True
    )
    p_values = {}
    for key in metrics:
        name = key.removeprefix("test/")
        if name not in ours or name not in theirs:
            continue
        p_values[key] = paired_p_value(ours[name][ours_rows], theirs[name][theirs_rows], test)
    return Comparison(p_values, len(ours_rows))


def paired_p_value(x: np.ndarray, y: np.ndarray, test: str) -> float:
    """Return the two-sided p-value of a paired test; NaN when it is undefined."""
    if len(x) < 2 or np.allclose(x, y):
        return math.nan
    if test == "wilcoxon":
        try:
            return float(stats.wilcoxon(x, y).pvalue)
        except ValueError:
            return math.nan
    return float(stats.ttest_rel(x, y).pvalue)


def build_table(
    entries: Sequence[Entry],
    baselines: Mapping[str, Entry],
    comparisons: Mapping[str, Comparison | None],
    metrics: Sequence[str],
    primary: str,
) -> pd.DataFrame:
    """Return one row per entry: metrics, p-values against the baseline, Δ% of `primary`."""
    rows = []
    for entry in entries:
        baseline = baselines.get(entry.dataset)
        comparison = comparisons.get(entry.run_id)
        row: dict[str, Any] = {
            "dataset": entry.dataset,
            "solver": entry.solver,
            "encoder": entry.encoder,
            "tuned": entry.tuned,
            "n_trials": entry.n_trials,
            "baseline": baseline is not None and baseline.run_id == entry.run_id,
        }
        row.update({key: entry.metrics.get(key, math.nan) for key in metrics})
        if baseline is not None and primary in entry.metrics and primary in baseline.metrics:
            reference = baseline.metrics[primary]
            row[f"delta_pct/{primary}"] = (
                100.0 * (entry.metrics[primary] - reference) / reference if reference else math.nan
            )
        for key in metrics:
            p_value = math.nan
            if comparison is not None:
                p_value = comparison.p_values.get(key, math.nan)
            row[f"p/{key}"] = p_value
        row["n_users_compared"] = comparison.n_users if comparison is not None else None
        row["run_id"] = entry.run_id
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty and primary in table:
        table = table.sort_values(["dataset", primary], ascending=[True, False], kind="stable")
    return table.reset_index(drop=True)


def to_markdown(table: pd.DataFrame, metrics: Sequence[str], primary: str, alpha: float) -> str:
    """Render the table as Markdown; `*` marks a metric whose p-value is below `alpha`."""
    headers = ["dataset", "solver", "encoder", "tuned", *[_short(key) for key in metrics]]
    delta_key = f"delta_pct/{primary}"
    headers += [f"Δ% {_short(primary)}", f"p {_short(primary)}"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, row in table.iterrows():
        cells = [
            str(row["dataset"]),
            str(row["solver"]) + (" (baseline)" if row["baseline"] else ""),
            str(row["encoder"]),
            f"{int(row['n_trials'])} trials" if _present(row["n_trials"]) else "no",
        ]
        for key in metrics:
            mark = "*" if _present(row[f"p/{key}"]) and row[f"p/{key}"] < alpha else ""
            cells.append(f"{row[key]:.5f}{mark}" if _present(row[key]) else "–")
        delta = row.get(delta_key)
        cells.append(f"{delta:+.2f}" if _present(delta) and not row["baseline"] else "–")
        p_value = row[f"p/{primary}"]
        cells.append(f"{p_value:.2g}" if _present(p_value) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _short(key: str) -> str:
    matched = TEST_METRIC.match(key)
    if matched is None:
        return key
    name = {"recall": "Recall", "ndcg": "NDCG"}[matched.group(1)]
    return f"{name}@{matched.group(2)}"


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return False
