"""train(spec, data, sink): compile, fit with callbacks that emit events, checkpoint, evaluate.

- `loop`: train(); `checkpoints`: per-epoch checkpoints and resume; `evaluation`: scoring a
  finished run; `backend`: the one module with TensorFlow-specific code.
"""
