"""A run's artifacts: model.keras, history.csv, spec.json, and stack.py, a Keras script that rebuilds it.

- `artifacts`: export_run and history.csv; `script`: the generated stack.py; `graph`,
  `layers`, `source`: how a model's graph becomes Python source; `training_code`: how
  stack.py compiles and fits, rendered from the trainer's policy (`core.training.compile`).
"""
