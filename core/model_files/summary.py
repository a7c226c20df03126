"""What a model file was found to be: the static report, the verified summary, its layers.

Everything here is plain data, so the verifying child process can send a summary back as
one JSON line. `ModelFileReport` is what static inspection found; `ModelSummary` adds what
loading the file produced, from `summary_fields(model)`, including `top_level_layers(model)`:
one row per top-level layer, the layers `core.model_files.loading.cut_model` can cut at.

Example:
    >>> summary = ModelSummary(file=report, **summary_fields(model))
    >>> print(summary.describe())
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.spec.shapes import format_shape

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ModelFileReport:
    """What static inspection found; plain data."""

    file_name: str
    format: str  # "keras" or "h5"
    size_bytes: int
    sha256: str
    model_class: str
    model_name: str | None
    layer_count: int
    layer_classes: tuple[str, ...]  # first appearance order, nested models included
    weight_bytes: int  # declared by the HDF5 datasets
    members: tuple[str, ...] = ()  # .keras archive members
    keras_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layer_classes"] = list(self.layer_classes)
        data["members"] = list(self.members)
        return data


@dataclass(frozen=True)
class ModelSummary:
    """A verified model file: the static report plus what loading it produced. Plain data."""

    file: ModelFileReport
    name: str
    model_class: str
    input_shapes: list  # without the batch axis, like every shape in StackLab
    output_shapes: list
    total_params: int
    trainable_params: int
    layers: list[dict]  # rows of `top_level_layers`

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["file"] = self.file.to_dict()
        data["non_trainable_params"] = self.non_trainable_params
        return data

    def describe(self) -> str:
        """A Keras-like summary table, for the CLI."""
        rows = [("layer", "class", "output shape", "params", "trainable")]
        rows += [
            (row["name"], row["class"], format_shape(row["output_shape"]),
             f"{row['params']:,}", "yes" if row["trainable"] else "no")
            for row in self.layers
        ]
        widths = [max(len(row[column]) for row in rows) for column in range(5)]
        lines = [
            f"{self.file.file_name}: {self.model_class} '{self.name}' (.{self.file.format}, "
            f"{self.file.size_bytes:,} bytes, sha256 {self.file.sha256[:12]})",
            f"inputs {format_shape(self.input_shapes)} -> outputs {format_shape(self.output_shapes)}",
        ]
        for row in rows:
            cells = [cell.rjust(width) if column == 3 else cell.ljust(width)
                     for column, (cell, width) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
        lines.append(
            f"total params {self.total_params:,} (trainable {self.trainable_params:,}, "
            f"non-trainable {self.non_trainable_params:,})"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# From a loaded model


def summary_fields(model: "keras.Model") -> dict[str, Any]:
    """Every `ModelSummary` field but `file`, as plain data, for a loaded model."""
    return {
        "name": model.name,
        "model_class": type(model).__name__,
        "input_shapes": [list(tensor.shape[1:]) for tensor in model.inputs or []],
        "output_shapes": [list(tensor.shape[1:]) for tensor in model.outputs or []],
        "total_params": _count(model.weights),
        "trainable_params": _count(model.trainable_weights),
        "layers": top_level_layers(model),
    }


def top_level_layers(model: "keras.Model") -> list[dict]:
    """One row per top-level layer: name, class, output_shape (no batch axis), params, trainable.

    Top-level layers are the ones `core.model_files.loading.cut_model` can cut at;
    `core.build.trainability.trainability_rows` lists the leaf layers inside nested models instead.
    """
    return [
        {
            "name": layer.name,
            "class": type(layer).__name__,
            "output_shape": _output_shape(layer),
            "params": _count(layer.weights),
            "trainable": bool(layer.trainable),
        }
        for layer in model.layers
    ]


def _output_shape(layer) -> Any:
    import keras

    try:
        output = layer.output
    except (AttributeError, ValueError, RuntimeError):  # unbuilt, or used more than once
        return None
    return keras.tree.map_structure(lambda tensor: list(tensor.shape[1:]), output)


def _count(weights) -> int:
    return int(sum(math.prod(weight.shape) for weight in weights))
