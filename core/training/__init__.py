"""train(spec, data, sink): compile, fit with callbacks that emit events, checkpoint, evaluate.

- `loop`: train() and its phases; `compile`: the one compile/fit policy (optimizers,
  schedules, loss and metrics, callbacks, phases) that the trainer instantiates and the
  generated script renders; `callbacks`: the callback that emits events; `checkpoints`:
  per-epoch checkpoints and resume; `evaluation`: scoring a finished run; `backend`: the
  one module with TensorFlow-specific code.
"""
