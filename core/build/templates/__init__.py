"""Built-in sub-model builders, in a registry keyed by name (`TEMPLATES`).

- `registry`: Template and ParamSpec, `register`; `blocks`: layers the templates share;
- `image`: cnn_features (the seed's model_a), cnn_classifier;
- `vector`: dense_head (the seed's model_b), mlp, mlp_classifier, tabular_encoder;
- `sequence`: conv1d_encoder, rnn_encoder; `applications`: Keras Applications backbones.
"""

import importlib

from core.build.templates.registry import TEMPLATES, ParamSpec, Template

# Each module registers its templates when imported; this order is the order pickers list them in.
for _module in ("image", "vector", "sequence", "applications"):
    importlib.import_module(f"core.build.templates.{_module}")

__all__ = ["TEMPLATES", "ParamSpec", "Template"]
