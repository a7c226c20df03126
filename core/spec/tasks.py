"""What a dataset asks of a model: the learning task and what the output layer must be.

A dataset describes its task once (`TaskInfo`); the head's units and activation, the loss
and the default metrics follow from it unless the spec says otherwise. No Keras import.
"""

from __future__ import annotations

from dataclasses import dataclass

TASK_KINDS = ("multiclass", "binary", "regression")


@dataclass(frozen=True)
class TaskInfo:
    """The learning task of a dataset.

    Args:
        kind: "multiclass" (integer labels 0..n-1), "binary" (labels 0/1) or "regression".
        input_shape: shape of one sample, without the batch axis.
        num_classes: number of classes (0 for regression).
        output_dim: number of regression targets (1 for classification tasks).
        class_names: readable names of the classes, in label order.
    """

    kind: str
    input_shape: tuple[int, ...]
    num_classes: int = 0
    output_dim: int = 1
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(f"Task kind must be one of {list(TASK_KINDS)}, received {self.kind!r}.")

    @property
    def is_classification(self) -> bool:
        return self.kind in ("multiclass", "binary")

    @property
    def output_units(self) -> int:
        """Units of the final layer: one per class, one for binary, one per target."""
        if self.kind == "multiclass":
            return self.num_classes
        return 1 if self.kind == "binary" else self.output_dim

    @property
    def output_activation(self) -> str:
        return {"multiclass": "softmax", "binary": "sigmoid", "regression": "linear"}[self.kind]

    @property
    def default_loss(self) -> str:
        return {
            "multiclass": "sparse_categorical_crossentropy",
            "binary": "binary_crossentropy",
            "regression": "mse",
        }[self.kind]

    @property
    def default_metrics(self) -> tuple[str, ...]:
        return ("mae",) if self.kind == "regression" else ("accuracy",)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "output_dim": self.output_dim,
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "TaskInfo":
        return cls(
            kind=data["kind"],
            input_shape=tuple(data["input_shape"]),
            num_classes=int(data.get("num_classes", 0)),
            output_dim=int(data.get("output_dim", 1)),
            class_names=tuple(data.get("class_names", ())),
        )
