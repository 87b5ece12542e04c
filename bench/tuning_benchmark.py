"""Time an Optuna study of L3AE on the Amazon Games data and record it in docs/benchmarks-tuning.md.

    python bench/tuning_benchmark.py [--n-trials 50] [--data DIR] [--output FILE]

Runs `src/run.py dataset=games encoder=games-minilm solver=l3ae search=optuna` as a subprocess
in a fresh temporary project root, so a new Optuna storage and MLflow store and nothing
resumes. It times the whole command, then reads the study and the MLflow runs for a per-phase
breakdown: data loading, trials (fit and validation evaluation), the best trial's test
evaluation, and the per-trial overhead of Optuna and MLflow bookkeeping. Run it on an
otherwise idle machine; the load average before and after is recorded next to the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import optuna
import psutil
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from threadpoolctl import threadpool_info

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(
    os.environ.get("GAMES_DATA", PROJECT_ROOT.parent / "shared" / "data" / "easyrec-games")
)
STUDY = "games/games-minilm/l3ae"
TARGET_S = 300.0
# A 1-minute load average above this means another process competed for the CPUs.
BUSY_LOAD = 1.0


def run_study(root: Path, data: Path, n_trials: int) -> tuple[float, str]:
    """Run the tuned job once and return its wall time and combined output."""
    command = [
        sys.executable,
        str(PROJECT_ROOT / "src" / "run.py"),
        f"paths.root={root}",
        "progress=false",
        "dataset=games",
        f"dataset.path={data}",
        "encoder=games-minilm",
        "solver=l3ae",
        "search=optuna",
        f"search.n_trials={n_trials}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("L3AE_BENCH_ROOT", None)
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall_s = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"The tuned job failed:\n{completed.stdout}\n{completed.stderr}")
    return wall_s, completed.stdout


def breakdown(root: Path) -> dict[str, float]:
    """Read phase timings from the study's trials and the job's MLflow run."""
    storage = f"sqlite:///{root / 'optuna' / 'optuna.db'}"
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    # Trials that fitted (not FAIL, not reused from an identical earlier trial).
    fitted = [
        trial
        for trial in trials
        if trial.state == TrialState.COMPLETE and "time/fit_s" in trial.user_attrs["metrics"]
    ]
    durations = [
        (trial.datetime_complete - trial.datetime_start).total_seconds() for trial in fitted
    ]
    fits = [trial.user_attrs["metrics"]["time/fit_s"] for trial in fitted]
    evaluations = [trial.user_attrs["metrics"]["time/evaluation_s"] for trial in fitted]

    client = MlflowClient(f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("l3ae-bench").experiment_id
    (job,) = [
        run
        for run in client.search_runs([experiment])
        if run.data.tags.get("l3ae_bench.kind") == "job"
    ]
    overhead = [
        total - fit - evaluation
        for total, fit, evaluation in zip(durations, fits, evaluations, strict=True)
    ]
    return {
        "n_trials": len(trials),
        "n_complete": sum(trial.state == TrialState.COMPLETE for trial in trials),
        "n_fail": sum(trial.state == TrialState.FAIL for trial in trials),
        "study_s": job.data.metrics["time/study_s"],
        "load_s": job.data.metrics["time/load_s"],
        "embedding_s": job.data.metrics.get("time/embedding_s", 0.0),
        "final_evaluation_s": job.data.metrics["time/evaluation_s"],
        "trial_median_s": statistics.median(durations),
        "fit_median_s": statistics.median(fits),
        "evaluation_median_s": statistics.median(evaluations),
        "overhead_median_s": statistics.median(overhead),
        "best_val_ndcg_at_20": job.data.metrics["val/ndcg_at_20"],
        "best_test_ndcg_at_20": job.data.metrics["test/ndcg_at_20"],
        "best_test_recall_at_20": job.data.metrics["test/recall_at_20"],
    }


def hardware() -> str:
    blas = ", ".join(
        f"{item['internal_api']} {item.get('version', '')} ({item['num_threads']} threads)"
        for item in threadpool_info()
    )
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    memory = psutil.virtual_memory().total / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM; BLAS: {blas}"


def section(n_trials: int, wall_s: float, numbers: dict[str, float], loads: tuple) -> str:
    verdict = "meets" if wall_s <= TARGET_S else "misses"
    trials = (
        f"{numbers['n_trials']:.0f} ({numbers['n_complete']:.0f} COMPLETE, "
        f"{numbers['n_fail']:.0f} FAIL)"
    )
    busy = ""
    if max(loads) > BUSY_LOAD:
        busy = (
            f"\nThe load average exceeded {BUSY_LOAD:g} during this run: other processes shared "
            "the cores, so these times overstate the study's cost. Rerun on an idle machine "
            "for a record.\n"
        )
    rows = [
        ("whole command (`src/run.py`, one process)", wall_s),
        ("  of which the study (trials only)", numbers["study_s"]),
        ("  data loading", numbers["load_s"]),
        ("  embeddings (cached pickle)", numbers["embedding_s"]),
        ("  test evaluation of the best trial", numbers["final_evaluation_s"]),
        ("one fitted trial, median", numbers["trial_median_s"]),
        ("  fit, median", numbers["fit_median_s"]),
        ("  validation evaluation, median", numbers["evaluation_median_s"]),
        ("  Optuna + MLflow bookkeeping, median", numbers["overhead_median_s"]),
    ]
    table = "\n".join(f"| {name} | {value:.2f} |" for name, value in rows)
    return f"""## Optuna study of L3AE on Games ({n_trials} trials)

Command: `python bench/tuning_benchmark.py --n-trials {n_trials}`, which runs
`python src/run.py dataset=games encoder=games-minilm solver=l3ae search=optuna
search.n_trials={n_trials}` in a fresh project root (new Optuna and MLflow stores).

- Recorded: {datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
- Hardware: {hardware()}
- Load average (1 min) before / after: {loads[0]:.2f} / {loads[1]:.2f}
- Data: 17,397 users × 8,330 items, MiniLM embeddings (d = 384), float32
- Trials: {trials}
- Best trial: val NDCG@20 {numbers["best_val_ndcg_at_20"]:.5f}, test Recall@20
  {numbers["best_test_recall_at_20"]:.5f}, test NDCG@20 {numbers["best_test_ndcg_at_20"]:.5f}
{busy}
| phase | seconds |
| --- | --- |
{table}

Target: the whole {n_trials}-trial study within {TARGET_S:.0f} s on a 2-core machine; this
run {verdict} it ({wall_s:.0f} s). FAIL trials (λ_X + λ_E ≤ 0 proposals) end before fitting,
so they cost only bookkeeping.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-trials", type=int, default=50)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--output", type=Path, default=PROJECT_ROOT / "docs" / "benchmarks-tuning.md"
    )
    args = parser.parse_args()
    if not (args.data / "trn_mat.pkl").is_file():
        sys.exit(f"Games data not found in {args.data}; pass --data or set GAMES_DATA.")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tuning-bench-") as tmp:
        wall_s, _ = run_study(Path(tmp), args.data, args.n_trials)
        numbers = breakdown(Path(tmp))
    load_after = os.getloadavg()[0]

    text = "# Tuning benchmarks\n\n" + section(
        args.n_trials, wall_s, numbers, (load_before, load_after)
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
