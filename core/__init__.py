"""StackLab's library: stacked Keras models described as data, built, trained and exported.

Modules that only describe, store or schedule (`spec`, `events`, `tasks`, `data`, `runs`)
do not import Keras; the dashboard imports only those.
"""

import os

# TensorFlow's C++ start-up chatter ("oneDNN custom operations are on", CUDA probes) hides
# the lines users need in the CLI and worker logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
