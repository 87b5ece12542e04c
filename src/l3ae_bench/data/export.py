"""Export splits in the pickle layout of the RLMRec, EasyRec and L3AE research code.

`export_paper_layout` writes four files, so that the official L3AE code runs on the same
splits as this harness:

- ``trn_mat.pkl``, ``val_mat.pkl``, ``tst_mat.pkl``: pickled ``scipy.sparse.coo_matrix`` of
  float64 ones, users × items, the types of the research code's own data files;
- ``item_profile.json``: JSON Lines of ``item_id`` (the column) and ``profile`` (the text);
- ``id_map.json``: the external user and item id of each row and column.

The files of one `Interactions` are the same bytes on every export.

Command line, with the dataset chosen and overridden as for ``src/run.py``::

    python -m l3ae_bench.data.export OUT_DIR dataset=amazon-games dataset.split.seed=7
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from l3ae_bench.cache import atomic_write
from l3ae_bench.data.interactions import Interactions
from l3ae_bench.errors import BenchError, DataError

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}
PROJECT_ROOT = Path(__file__).resolve().parents[3]


def export_paper_layout(data: Interactions, folder: Path) -> list[Path]:
    """Write the splits and item texts of `data` into `folder`; return the written files.

    Raises `DataError` when an item has an empty text, because the research code's layout
    requires a profile per item.
    """
    empty = [index for index, text in enumerate(data.item_texts) if not text.strip()]
    if empty:
        raise DataError(
            f"{data.name}: {len(empty)} items have an empty text, for example item_index "
            f"{empty[:5]}, but item_profile.json needs a profile per item. Change "
            "dataset.text_template or drop those items before exporting."
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for split, file_name in SPLIT_FILES.items():
        matrix = sp.coo_matrix(getattr(data, split).astype(np.float64))
        written.append(folder / file_name)
        with atomic_write(folder / file_name) as handle:
            pickle.dump(matrix, handle, protocol=4)

    written.append(folder / "item_profile.json")
    with atomic_write(folder / "item_profile.json", "w") as handle:
        for index, text in enumerate(data.item_texts):
            handle.write(json.dumps({"item_id": index, "profile": text}, ensure_ascii=False))
            handle.write("\n")

    written.append(folder / "id_map.json")
    with atomic_write(folder / "id_map.json", "w") as handle:
        ids = {"user_ids": data.user_ids.tolist(), "item_ids": data.item_ids.tolist()}
        json.dump({"name": data.name, **ids}, handle, ensure_ascii=False)
    log.info("Exported %s to %s: %s", data.name, folder, data.summary())
    return written


def main(argv: list[str] | None = None) -> int:
    """Load the dataset chosen by Hydra overrides and export it; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m l3ae_bench.data.export",
        description="Write a dataset's splits in the L3AE research code's pickle layout.",
    )
    parser.add_argument("out", type=Path, help="folder to write the files into")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides as for src/run.py, such as dataset=ml-1m dataset.split.seed=7",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        default=PROJECT_ROOT / "conf",
        help="folder of config.yaml (default: the repository's conf/)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s"
    )
    try:
        data = _load(args.config_dir, args.overrides)
        files = export_paper_layout(data, args.out)
    except BenchError as error:
        log.error("%s", error)
        return 1
    print(f"Wrote {', '.join(str(path) for path in files)}")
    return 0


def _load(config_dir: Path, overrides: list[str]) -> Interactions:
    from hydra import compose, initialize_config_dir

    from l3ae_bench.config import PathsConfig, build, to_container
    from l3ae_bench.data.registry import load_dataset, parse_dataset_config

    os.environ.setdefault("L3AE_BENCH_ROOT", str(PROJECT_ROOT))
    with initialize_config_dir(str(config_dir.resolve()), version_base="1.3"):
        values = to_container(compose("config", overrides=overrides), "config")
    paths = build(PathsConfig, values.get("paths") or {}, "paths")
    format_name, config = parse_dataset_config(values.get("dataset") or {})
    return load_dataset(format_name, config, Path(paths.cache))


if __name__ == "__main__":
    sys.exit(main())
