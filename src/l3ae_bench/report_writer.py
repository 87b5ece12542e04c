"""Build the comparison report of an experiment and store it as files and as an MLflow run.

The report run (tag `l3ae_bench.kind=report`) belongs to the compared experiment. Its
description is the Markdown table, and its `report/` artifacts contain `table.md`, `table.csv`
and the plots, so the MLflow UI shows them next to the runs they compare. Later reports skip
report runs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from l3ae_bench.errors import ConfigError
from l3ae_bench.report import (
    SIGNIFICANCE_TESTS,
    TEST_METRIC,
    Comparison,
    Entry,
    PerUserStore,
    available_test_metrics,
    build_table,
    compare,
    pick_baselines,
    select_entries,
    to_markdown,
)
from l3ae_bench.report_plots import plot_head_tail, plot_metrics_at_k
from l3ae_bench.tracking import search_runs, start_job_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSettings:
    """Settings of a comparison report: the compared experiment, the tests and the output."""

    experiment: str
    """MLflow experiment whose job runs are compared."""
    tracking_uri: str
    """MLflow tracking URI of the store holding the experiment."""
    output: Path
    """Folder receiving table.md, table.csv and the plots."""
    objective: str = "val/ndcg_at_20"
    """Validation metric that picks the best run of each dataset × solver × encoder."""
    primary: str = "test/ndcg_at_20"
    """Test metric of the Δ% and p-value columns of the Markdown table."""
    test: str = "ttest"
    """Paired test across users: ttest (scipy.stats.ttest_rel) or wilcoxon."""
    alpha: float = 0.05
    """Significance level of the `*` marks."""
    head_tail_k: int = 20
    """Cut-off K of the head/tail plot."""
    baseline_solvers: tuple[str, ...] | None = None
    """Solvers eligible as baseline; None: solvers that read no item text."""
    log_to_mlflow: bool = True
    """Whether to store the report as an MLflow run of the experiment."""

    def __post_init__(self) -> None:
        if self.test not in SIGNIFICANCE_TESTS:
            raise ConfigError(f"--test must be one of {SIGNIFICANCE_TESTS}, got {self.test!r}.")
        if not TEST_METRIC.match(self.primary):
            raise ConfigError(
                f"--metric must be a test metric such as test/ndcg_at_20, got {self.primary!r}."
            )
        if not 0 < self.alpha < 1:
            raise ConfigError(f"--alpha must lie between 0 and 1, got {self.alpha}.")


@dataclass(frozen=True)
class ReportResult:
    """The report's table, the files written and the MLflow run holding them."""

    table: pd.DataFrame
    files: list[Path]
    run_id: str | None


def write_report(settings: ReportSettings) -> ReportResult:
    """Compare the experiment's job runs and write the table and plots."""
    started = time.perf_counter()
    runs = search_runs(settings.tracking_uri, settings.experiment)
    entries = select_entries(runs, settings.objective)
    if not entries:
        raise ConfigError(
            f"Experiment {settings.experiment!r} has no FINISHED job run with "
            f"{settings.objective} and test metrics; run jobs first (python src/run.py ...) "
            "or pick the experiment with --experiment."
        )
    baselines = pick_baselines(entries, settings.objective, settings.baseline_solvers)
    metrics = available_test_metrics(entries)
    comparisons = _compare_all(entries, baselines, metrics, settings)
    table = build_table(entries, baselines, comparisons, metrics, settings.primary)
    markdown = _document(settings, table, baselines, metrics, len(runs))

    output = settings.output
    output.mkdir(parents=True, exist_ok=True)
    files = [output / "table.md", output / "table.csv"]
    files[0].write_text(markdown, encoding="utf-8")
    table.to_csv(files[1], index=False)
    files += _plots(entries, settings)
    log.info(
        "Report of %d rows from %d runs written to %s in %.1fs",
        len(table),
        len(runs),
        output,
        time.perf_counter() - started,
    )
    run_id = _log_report(settings, files, markdown) if settings.log_to_mlflow else None
    return ReportResult(table, files, run_id)


def _compare_all(
    entries: list[Entry],
    baselines: dict[str, Entry],
    metrics: list[str],
    settings: ReportSettings,
) -> dict[str, Comparison | None]:
    store = PerUserStore(settings.tracking_uri)
    comparisons: dict[str, Comparison | None] = {}
    for entry in entries:
        baseline = baselines.get(entry.dataset)
        if baseline is None or baseline.run_id == entry.run_id:
            continue
        comparisons[entry.run_id] = compare(entry, baseline, metrics, store, settings.test)
    return comparisons


def _document(
    settings: ReportSettings,
    table: pd.DataFrame,
    baselines: dict[str, Entry],
    metrics: list[str],
    n_runs: int,
) -> str:
    test_name = {
        "ttest": "paired t-test (scipy.stats.ttest_rel)",
        "wilcoxon": "Wilcoxon signed-rank test (scipy.stats.wilcoxon)",
    }[settings.test]
    baseline_rule = (
        f"best of the solvers {list(settings.baseline_solvers)}"
        if settings.baseline_solvers
        else "best solver that reads no item text"
    )
    lines = [
        f"# Comparison report: {settings.experiment}",
        "",
        f"Best run per dataset × solver × encoder, chosen by {settings.objective} "
        f"(tuned runs first), among the {n_runs} runs of the experiment. Test metrics; "
        f"`*` marks p < {settings.alpha} "
        f"in a two-sided {test_name} across users against the dataset's baseline "
        f"({baseline_rule}, by {settings.objective}). p-values are not corrected for "
        "multiple comparisons.",
        "",
    ]
    for dataset, baseline in sorted(baselines.items()):
        lines.append(f"- Baseline on {dataset}: {baseline.label} (run {baseline.run_id})")
    lines += ["", to_markdown(table, metrics, settings.primary, settings.alpha)]
    return "\n".join(lines)


def _plots(entries: list[Entry], settings: ReportSettings) -> list:
    files = []
    for dataset in sorted({entry.dataset for entry in entries}):
        folder = settings.output / "plots"
        drawn = [
            plot_metrics_at_k(entries, dataset, folder / f"metrics_at_k_{_slug(dataset)}.png"),
            plot_head_tail(
                entries,
                dataset,
                settings.head_tail_k,
                folder / f"head_tail_{_slug(dataset)}.png",
            ),
        ]
        files += [path for path in drawn if path is not None]
    return files


def _log_report(settings: ReportSettings, files: list[Path], markdown: str) -> str:
    tags = {"l3ae_bench.kind": "report", "mlflow.note.content": markdown}
    with start_job_run(
        settings.tracking_uri, settings.experiment, settings.output, "report", tags
    ) as run:
        run.log_params({key: str(value) for key, value in asdict(settings).items()})
        for path in files:
            folder = "report/plots" if path.parent.name == "plots" else "report"
            run.log_artifact(path, folder)
        log.info("Report stored as MLflow run %s", run.run_id)
        return run.run_id


def _slug(text: str) -> str:
    return "".join(char if char.isalnum() or char in "-_" else "_" for char in text)
