"""Users' model files (.keras, .h5), hostile until inspected: checked, then loaded in a child process.

- `loading`: load_model_file, cut_model, summarize_model_file: the way in;
- `limits`: LoadLimits (STACKLAB_LOAD_*) and ModelFileRefused; `container_checks`: the
  archive or HDF5 container, before Keras sees it; `config_checks`: the model config (no
  Lambda, no custom classes); `child`: the child process that test-loads the file under
  limits; `summary`: what a loaded file holds, as plain data.

This package's modules import Keras only inside the functions that load (the dashboard reads
`limits` to state them).
"""
