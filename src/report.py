"""Write the comparison report of an MLflow experiment: `python src/report.py [options]`.

Examples:
    python src/report.py                                 # experiment l3ae-bench, local store
    python src/report.py --experiment games --test wilcoxon --metric test/recall_at_20

The table (Markdown and CSV) and plots go to --output and to a `report` run of the
experiment in MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT / "src"))
# One progress bar per downloaded per-user artifact would bury the report's output.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from l3ae_bench.errors import BenchError  # noqa: E402
from l3ae_bench.report_writer import ReportSettings, write_report  # noqa: E402
from l3ae_bench.tracking import default_tracking_uri  # noqa: E402

log = logging.getLogger("l3ae_bench.report_cli")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    root = Path(os.environ.get("L3AE_BENCH_ROOT", PROJECT_ROOT))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--experiment", default="l3ae-bench", help="MLflow experiment name")
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: sqlite store mlruns/mlflow.db under the project)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="folder for table.md, table.csv and plots (default: reports/<experiment>/<time>)",
    )
    parser.add_argument(
        "--objective",
        default="val/ndcg_at_20",
        help="validation metric that picks the best run of each group",
    )
    parser.add_argument(
        "--metric",
        default="test/ndcg_at_20",
        help="test metric of the Δ%% and p-value columns",
    )
    parser.add_argument("--test", choices=("ttest", "wilcoxon"), default="ttest")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level")
    parser.add_argument("--k", type=int, default=20, help="cut-off of the head/tail plot")
    parser.add_argument(
        "--baseline-solvers",
        default=None,
        help="comma-separated solvers eligible as baseline (default: those reading no text)",
    )
    parser.add_argument("--no-mlflow", action="store_true", help="write files only")
    parser.set_defaults(root=root)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    args = parse_args(argv)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    try:
        settings = ReportSettings(
            experiment=args.experiment,
            tracking_uri=args.tracking_uri or default_tracking_uri(args.root / "mlruns"),
            output=args.output or args.root / "reports" / args.experiment / stamp,
            objective=args.objective,
            primary=args.metric,
            test=args.test,
            alpha=args.alpha,
            head_tail_k=args.k,
            baseline_solvers=tuple(args.baseline_solvers.split(","))
            if args.baseline_solvers
            else None,
            log_to_mlflow=not args.no_mlflow,
        )
        result = write_report(settings)
    except BenchError as error:
        log.error("%s", error)
        return 1
    print((settings.output / "table.md").read_text(encoding="utf-8"))
    print(f"Report files in {settings.output}")
    if result.run_id:
        print(f"MLflow report run id: {result.run_id} (tracking URI {settings.tracking_uri})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
