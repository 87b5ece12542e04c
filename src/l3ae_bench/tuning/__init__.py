"""Hyperparameter search with Optuna: one resumable study per job, trials nested in MLflow.

- `settings` validates `conf/search/*.yaml` and builds the search space from the solver's
  config class.
- `storage` opens studies, and `trials` tracks which process runs which trial.
- `study` runs the trial loop.
- `job` ties them to the pipeline's stages. Import it as `l3ae_bench.tuning.job`: it imports
  the pipeline, which imports `settings`, so this package does not import it.
"""
