"""Run benchmark jobs: `python src/run.py [overrides]`, or `-m` for a Hydra multirun.

Examples:
    python src/run.py                                  # L3AE + MiniLM on MovieLens-100K
    python src/run.py -m solver=ease,l3ae              # two jobs, one MLflow run each
    python src/run.py dataset=games encoder=games-minilm
    python src/run.py search=optuna search.n_trials=20  # tune on validation, report test
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# conf/config.yaml reads the project root from here, so outputs, caches and the MLflow store
# resolve to absolute paths whatever the working directory.
os.environ.setdefault("L3AE_BENCH_ROOT", str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "src"))

from l3ae_bench.config import to_container  # noqa: E402
from l3ae_bench.errors import BenchError  # noqa: E402
from l3ae_bench.pipeline import run_job  # noqa: E402
from l3ae_bench.redaction import check_command_line, install_log_redaction  # noqa: E402
from l3ae_bench.tuning.settings import fixed_from_overrides  # noqa: E402

log = logging.getLogger("l3ae_bench.run")

# Errors of the jobs that failed in this process. A multirun goes on with its other jobs, and
# the process exits with status 1 at the end if any job failed.
FAILED_JOBS: list[str] = []


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run one job and return its validation objective (for sweepers)."""
    # Hydra has configured logging by now: hide secrets in the console and in the job's log.
    install_log_redaction()
    hydra_config = HydraConfig.get()
    tags = {
        "hydra.mode": hydra_config.mode.name.lower(),
        "hydra.output_dir": hydra_config.runtime.output_dir,
        "hydra.overrides": " ".join(hydra_config.overrides.task),
        "sweep": hydra_config.sweep.dir if hydra_config.mode.name == "MULTIRUN" else "",
        "hydra.job_num": hydra_config.job.get("num", 0),
    }
    try:
        values = to_container(cfg, "config")
        search = values.get("search") or {}
        if search.get("name", "none") != "none":
            # A solver setting given on the command line stays fixed during the search.
            search["fixed_on_command_line"] = fixed_from_overrides(hydra_config.overrides.task)
        result = run_job(values, tags)
    except BenchError as error:
        # A clear message without a stack trace; the MLflow run is already marked FAILED.
        log.error("%s", error)
        if hydra_config.mode.name != "MULTIRUN":
            raise SystemExit(1) from None
        FAILED_JOBS.append(f"job {tags['hydra.job_num']} ({tags['hydra.overrides']}): {error}")
        return None

    metrics = result["metrics"]
    test = {
        key: value
        for key, value in metrics.items()
        if key.startswith(("test/recall", "test/ndcg")) and not key.endswith(("_head", "_tail"))
    }
    if test:
        print("Test metrics: " + ", ".join(f"{key} = {value:.5f}" for key, value in test.items()))
    if "study" in result:
        print(f"Optuna study {result['study']!r}, best parameters {result['best_params']}")
    print(f"MLflow run id: {result['run_id']} (tracking URI {result['tracking_uri']})")
    return metrics.get(cfg.get("objective", "val/ndcg_at_20"))


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    """Turn SIGTERM (timeout, schedulers, container stops) into KeyboardInterrupt.

    The MLflow run then ends KILLED instead of staying RUNNING.
    """
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    # Before Hydra parses the command line, since it writes the overrides to the job folder.
    check_command_line(sys.argv[1:])
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted; the job's MLflow run is marked KILLED.", file=sys.stderr)
        sys.exit(130)
    if FAILED_JOBS:
        print(f"{len(FAILED_JOBS)} job(s) failed:", *FAILED_JOBS, sep="\n  ", file=sys.stderr)
        sys.exit(1)
