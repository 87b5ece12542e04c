"""Plots of the comparison report, drawn with matplotlib's Agg backend (no display needed).

- Recall@K and NDCG@K against K, one line per solver × encoder (colour per encoder), from the
  test metrics at every K the runs logged (`evaluation.k`).
- Head against tail items: the test metric at one K with targets restricted to the most
  popular items (`test/ndcg_at_20_head`) and to the others (`..._tail`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from l3ae_bench.report import TEST_METRIC, Entry  # noqa: E402

log = logging.getLogger(__name__)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_metrics_at_k(entries: Sequence[Entry], dataset: str, path: Path) -> Path | None:
    """Draw Recall@K and NDCG@K against K for one dataset; None when no run logged them."""
    rows = [entry for entry in entries if entry.dataset == dataset]
    if not rows:
        return None
    encoders = sorted({entry.encoder for entry in rows})
    solvers = sorted({entry.solver for entry in rows})
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(encoders)}
    markers = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(solvers)}

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric, title in ((axes[0], "recall", "Recall@K"), (axes[1], "ndcg", "NDCG@K")):
        for entry in rows:
            ks, values = _curve(entry, metric)
            if ks:
                axis.plot(
                    ks,
                    values,
                    marker=markers[entry.solver],
                    color=colours[entry.encoder],
                    label=entry.label,
                )
        axis.set_title(title)
        axis.set_xlabel("K")
        axis.set_xticks(sorted({k for entry in rows for k in _curve(entry, metric)[0]}))
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    figure.suptitle(f"{dataset}: test metrics against the cut-off K")
    return _save(figure, path)


def _curve(entry: Entry, metric: str) -> tuple[list[int], list[float]]:
    points = []
    for key, value in entry.metrics.items():
        matched = TEST_METRIC.match(key)
        if matched and matched.group(1) == metric:
            points.append((int(matched.group(2)), value))
    points.sort()
    return [k for k, _ in points], [value for _, value in points]


def plot_head_tail(entries: Sequence[Entry], dataset: str, k: int, path: Path) -> Path | None:
    """Draw head and tail Recall@k and NDCG@k per row; None when no run logged them."""
    rows = [
        entry
        for entry in entries
        if entry.dataset == dataset and f"test/ndcg_at_{k}_head" in entry.metrics
    ]
    if not rows:
        log.info("No head/tail metrics at K=%d for %s; skipping that plot", k, dataset)
        return None
    positions = np.arange(len(rows))
    width = 0.38
    fraction = rows[0].params.get("evaluation.head_fraction")
    head_label = f"head (top {float(fraction):.0%} of items)" if fraction else "head"
    figure, axes = plt.subplots(1, 2, figsize=(max(10, 1.6 * len(rows) + 4), 4.8))
    for axis, metric, title in ((axes[0], "recall", "Recall"), (axes[1], "ndcg", "NDCG")):
        head = [entry.metrics.get(f"test/{metric}_at_{k}_head", np.nan) for entry in rows]
        tail = [entry.metrics.get(f"test/{metric}_at_{k}_tail", np.nan) for entry in rows]
        axis.bar(positions - width / 2, head, width, label=head_label)
        axis.bar(positions + width / 2, tail, width, label="tail (other items)")
        axis.set_xticks(positions, [entry.label for entry in rows], rotation=30, ha="right")
        axis.set_title(f"{title}@{k}")
        axis.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    # Below the axes, where it cannot cover a bar.
    figure.legend(handles, labels, loc="lower center", ncol=2, fontsize=9)
    figure.suptitle(f"{dataset}: test hits on popular (head) and other (tail) items")
    return _save(figure, path, bottom=0.07)


def _save(figure: plt.Figure, path: Path, bottom: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=(0, bottom, 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
