"""Static checks of a model config: only Keras's own classes and functions, nothing that runs
code or reads other files.

The config (a `.keras` archive's config.json or an HDF5 file's model_config attribute) is
walked as JSON, before Keras deserializes anything. Every serialized object must name a
public Keras class or a built-in activation, loss or metric; Lambda and other code-running
layers, custom or unknown classes, pickled functions and layers that read files (TFSMLayer,
a lookup layer's vocabulary file, any file-like key) are refused. Classes are looked up only
among modules Keras has already imported, never by importing.

The checks raise `Refusal` (see `core.model_files.limits`); the caller names the file.

Example:
    >>> check_model_config(json.loads(config_text), skip_keys={"compile_config"})["layer_classes"]
    ('InputLayer', 'Dense')
"""

from __future__ import annotations

import types
from typing import Any

from core.model_files.limits import refuse, shortened

MAX_CONFIG_DEPTH = 200

# Values, not classes: what serialization_lib and the legacy JSON decoder rebuild as data.
DATA_MARKERS = {
    "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__",
    "__slice__", "__tuple__", "TensorShape",
}
CODE_MARKERS = {"__lambda__", "__typespec__", "TypeSpec", "CompositeTensor"}
# Layers that run Python code from the config (or unpickle it) and layers that load files.
CODE_LAYERS = {"Lambda", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"}
FILE_LAYERS = {"TFSMLayer"}
VOCABULARY_LAYERS = {"StringLookup", "IntegerLookup", "TextVectorization"}
FILE_KEYS = {
    "filepath", "file_path", "filename", "file_name", "path", "dirpath", "directory",
    "vocabulary_file", "vocabulary_path", "url", "uri", "origin",
}
FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics")


def check_model_config(config: Any, skip_keys: set[str]) -> dict[str, Any]:
    """Walk a parsed model config; return the `ModelFileReport` fields it tells.

    Those are model_class, model_name, layer_count and layer_classes. `skip_keys` are
    top-level keys that loading with compile=False never reads, so they are not walked.

    Raises:
        Refusal: the config names something Keras would run as code, a class or function
            that is not Keras's own, or a file to read; the reason says which.
    """
    import keras

    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        refuse("its model config is not a serialized Keras object.")
    walker = _ConfigWalker()
    walker.walk({key: value for key, value in config.items() if key not in skip_keys}, "the model", 0)
    root = _resolve_class(config.get("module"), config["class_name"])
    if root is None or not issubclass(root, keras.Model):
        refuse(f"it holds a '{config['class_name']}', not a model.")
    inner = config.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    return {
        "model_class": config["class_name"],
        "model_name": name if isinstance(name, str) else None,
        # The root model is the first layer the walker met; count what it holds.
        "layer_count": len(walker.layer_classes) - 1,
        "layer_classes": tuple(dict.fromkeys(walker.layer_classes[1:])),
    }


class _ConfigWalker:
    """Visits every value of a config; refuses anything Keras would run or read as code."""

    def __init__(self):
        self.layer_classes: list[str] = []

    def walk(self, value: Any, where: str, depth: int, in_layers: bool = False) -> None:
        if depth > MAX_CONFIG_DEPTH:
            refuse(f"its config is nested more than {MAX_CONFIG_DEPTH} levels deep.")
        if isinstance(value, list):
            for item in value:
                self.walk(item, where, depth + 1, in_layers)
        elif isinstance(value, dict):
            if "class_name" in value:
                where = self._check_object(value, where, in_layers)
            for key, item in value.items():
                if isinstance(key, str) and key.lower() in FILE_KEYS and isinstance(item, str) and item:
                    refuse(
                        f"{where} has {key}={shortened(item)}, so loading it would read a file "
                        f"outside the model file."
                    )
                self.walk(item, where, depth + 1, key in ("layers", "layer"))

    def _check_object(self, config: dict, where: str, in_layers: bool) -> str:
        """Check one serialized object; return how to name it (and what it holds) in refusals."""
        import keras

        class_name, module = config["class_name"], config.get("module")
        registered = config.get("registered_name")
        inner = config.get("config")
        name = inner.get("name") if isinstance(inner, dict) else None
        if in_layers and isinstance(name, str):
            where = f"layer '{name}'"
        if not isinstance(class_name, str) or not isinstance(module, (str, type(None))):
            refuse(f"{where} has a malformed class entry.")
        if class_name in CODE_MARKERS:
            refuse(
                f"{where} contains a serialized Python function or type ('{class_name}'), "
                f"which is arbitrary code; rebuild the model from built-in Keras layers."
            )
        if class_name in DATA_MARKERS:
            return where
        if module is not None and module != "keras" and not module.startswith("keras."):
            refuse(
                f"{where} refers to '{class_name}' from module '{module}'; only Keras's own "
                f"classes and functions can be loaded (no custom code)."
            )
        if class_name == "function":
            self._check_function(config, where)
            return where
        if "module" in config and module is None or registered not in (None, class_name):
            refuse(
                f"{where} uses the custom class {shortened(registered or class_name)}, which is not "
                f"part of Keras; custom classes run code from outside the file's config. "
                f"Rebuild the model from built-in Keras layers."
            )
        cls = _resolve_class(module, class_name)
        if cls is None:
            refuse(
                f"{where} uses the class '{class_name}'"
                f"{f' from {module}' if module else ''}, which Keras does not know."
            )
        if not issubclass(cls, keras.layers.Layer):
            return where
        if isinstance(name, str):
            where = f"{'model' if issubclass(cls, keras.Model) else 'layer'} '{name}'"
        names = {class_name, cls.__name__}
        if "Lambda" in names:
            refuse(
                f"{where} is a Lambda layer (arbitrary Python code); rebuild the model without "
                f"Lambda layers or use a built-in template."
            )
        if names & CODE_LAYERS:
            refuse(f"{where} is a {class_name} layer, which runs code stored in the file.")
        if names & FILE_LAYERS:
            refuse(
                f"{where} is a {class_name}, which loads a model from a path outside the file; "
                f"save that model as .keras and upload it instead."
            )
        vocabulary = inner.get("vocabulary") if isinstance(inner, dict) else None
        if names & VOCABULARY_LAYERS and isinstance(vocabulary, str):
            refuse(
                f"{where} reads its vocabulary from the file {shortened(vocabulary)}; adapt the "
                f"layer or pass the vocabulary as a list so it is saved inside the model."
            )
        self.layer_classes.append(class_name)
        return where

    def _check_function(self, config: dict, where: str) -> None:
        module, function_name = config.get("module"), config.get("config")
        if module not in FUNCTION_MODULES or not isinstance(function_name, str):
            refuse(
                f"{where} refers to the Python function {shortened(function_name)} from module "
                f"'{module}'; only Keras's built-in activations, losses and metrics can be loaded."
            )
        function = _public_symbol(f"{module}.{function_name}")
        if not isinstance(function, types.FunctionType) or not function.__module__.startswith("keras."):
            refuse(f"{where} refers to '{module}.{function_name}', which Keras does not have.")
        if config.get("registered_name") not in (None, function_name):
            refuse(f"{where} refers to the custom function '{config['registered_name']}'.")


def _saveable_bases() -> tuple[type, ...]:
    import keras

    return (
        keras.Operation,  # layers, models and the ops a Functional model calls
        keras.Initializer, keras.Regularizer, keras.constraints.Constraint,
        keras.Optimizer, keras.optimizers.schedules.LearningRateSchedule,
        keras.Loss, keras.Metric, keras.DTypePolicy, keras.Quantizer, keras.random.SeedGenerator,
    )


def _public_symbol(dotted: str) -> Any:
    """Follow `keras.a.b.C` through modules Keras already imported; never imports."""
    import keras

    parts = dotted.split(".")
    if parts[0] != "keras" or any(not part or part.startswith("_") for part in parts):
        return None
    value: Any = keras
    for part in parts[1:]:
        if not isinstance(value, types.ModuleType) or not value.__name__.startswith("keras"):
            return None
        value = value.__dict__.get(part)
    return value


_LEGACY_NAMESPACES = ("keras.layers", "keras.models", "keras.initializers", "keras.regularizers",
                      "keras.constraints", "keras.optimizers", "keras.optimizers.schedules",
                      "keras.losses", "keras.metrics", "keras.dtype_policies", "keras")


def _resolve_class(module: str | None, class_name: str) -> type | None:
    """The Keras class a config entry names, or None. Legacy .h5 configs give no module."""
    import keras

    bases = _saveable_bases()

    def keras_class(value: Any) -> bool:
        return (isinstance(value, type) and issubclass(value, bases)
                and value.__module__.startswith("keras."))

    if module is not None:
        value = _public_symbol(f"{module}.{class_name}")
        return value if keras_class(value) else None
    for namespace in _LEGACY_NAMESPACES:
        value = _public_symbol(f"{namespace}.{class_name}")
        if keras_class(value):
            return value
    # "Functional" is not exported, but legacy configs name it; find it among Model's kin.
    for subclass in keras.Model.__subclasses__():
        if subclass.__name__ == class_name and keras_class(subclass):
            return subclass
    return None
