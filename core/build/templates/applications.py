"""Keras Applications backbones (MobileNetV2, EfficientNetB0, ResNet50) as image encoders.

Offline by construction: `weights="imagenet"` looks for the architecture's no-top weights
file in the local Keras cache and hands Keras the file's path, never the string
"imagenet", so Keras has nothing to download. A missing file is a ValueError that names
the path to put it at.

Input adaptation (`adapt_input`, on by default): images smaller than `input_size` are
scaled up (aspect ratio kept) and 1-channel images are repeated into 3 identical channels,
so a grey pixel reaches the backbone as the RGB pixel it is and pretrained filters keep
their meaning; other channel counts go through a trainable 1x1 Conv2D to 3 channels.

Preprocessing: each architecture gets what `keras.applications.<arch>.preprocess_input`
does, as layers inside the member (so a saved model carries it), applied to pixels in
`pixel_range`: MobileNetV2 scales to [-1, 1]; ResNet50 flips RGB to BGR (3-channel input
only: repeated grey channels are identical) and subtracts the ImageNet mean pixel;
EfficientNetB0 takes 0-255 pixels and normalizes inside the backbone. It is applied with
either weights, so switching weights does not change what the backbone sees.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from core.build.templates.registry import ParamSpec, Template, register

# keras.applications' minimum input size for all three architectures (include_top=False).
MIN_SIZE = 32
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# MobileNetV2 ImageNet weights exist for these square sizes; any other size uses 224's.
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
# keras.applications.efficientnet.IMAGENET_STDDEV_RGB
EFFICIENTNET_STDDEV_RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Architecture:
    """How to build one keras.applications backbone and feed it.

    scale, offset: preprocess_input on 0-255 pixels as `x * scale + offset` (after the
    RGB -> BGR flip when `bgr`).
    weights_file: the no-top ImageNet file name Keras would download, for (params, size).
    """

    constructor: Callable[..., keras.Model]
    weights_file: Callable[[dict, tuple], str]
    weights_url: str
    scale: float
    offset: tuple[float, float, float]
    bgr: bool = False


def _mobilenet_v2_file(params: dict, size: tuple) -> str:
    rows = size[0] if size[0] == size[1] and size[0] in MOBILENET_V2_SIZES else 224
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(params['alpha'])}_{rows}_no_top.h5"


ARCHITECTURES = {
    # preprocess_input mode "tf": x / 127.5 - 1
    "MobileNetV2": Architecture(
        keras.applications.MobileNetV2, _mobilenet_v2_file,
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/",
        scale=1 / 127.5, offset=(-1.0, -1.0, -1.0),
    ),
    # EfficientNet rescales and normalizes inside the model: it wants 0-255 pixels.
    "EfficientNetB0": Architecture(
        keras.applications.EfficientNetB0, lambda params, size: "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/",
        scale=1.0, offset=(0.0, 0.0, 0.0),
    ),
    # preprocess_input mode "caffe": RGB -> BGR, minus the ImageNet mean pixel (BGR order)
    "ResNet50": Architecture(
        keras.applications.ResNet50, lambda params, size: "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/",
        scale=1.0, offset=(-103.939, -116.779, -123.68), bgr=True,
    ),
}


def keras_cache_dir() -> Path:
    """Where Keras caches downloads: $KERAS_HOME, else ~/.keras (/tmp/.keras if ~ is read-only).

    The same rule as `keras.src.backend.config`, but read at call time (Keras reads
    KERAS_HOME once, at import). Application weights live in its `models/` folder.
    """
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    base = os.path.expanduser("~")
    return Path(base if os.access(base, os.W_OK) else "/tmp") / ".keras"


def weights_file_path(architecture: str, params: dict, size: tuple) -> Path:
    """Where the no-top ImageNet weights for this backbone belong in the local Keras cache."""
    arch = ARCHITECTURES[architecture]
    return keras_cache_dir() / "models" / arch.weights_file(params, size)


def _cached_weights(params: dict, size: tuple, name: str) -> Path:
    """The cached ImageNet weights file, or a ValueError saying where to put it."""
    path = weights_file_path(params["architecture"], params, size)
    # keras.utils.get_file falls back to /tmp/.keras when the cache folder is not writable.
    for candidate in (path, Path("/tmp/.keras/models") / path.name):
        if candidate.is_file():
            return candidate
    url = ARCHITECTURES[params["architecture"]].weights_url + path.name
    raise ValueError(
        f"Member '{name}' (template 'applications_backbone') uses weights='imagenet', but the "
        f"{params['architecture']} weights file '{path.name}' is not in the local Keras cache, "
        f"and StackLab never downloads weights. Put the file at {path} (it is published at "
        f"{url}), or use weights='none', which works offline."
    )


def adapted_size(height: int | None, width: int | None, input_size: int) -> tuple[int, int]:
    """(height, width) scaled up so the shorter side is at least `input_size`, aspect kept.

    Unknown sizes become input_size x input_size.
    """
    if height is None or width is None:
        return input_size, input_size
    shorter = min(height, width)
    if shorter >= input_size:
        return height, width
    scale = input_size / shorter
    return max(input_size, round(height * scale)), max(input_size, round(width * scale))


def _to_rgb(x, channels: int, name: str):
    if channels == 1:
        return keras.layers.Concatenate(axis=-1, name=f"{name}_to_rgb")([x, x, x])
    return keras.layers.Conv2D(3, 1, name=f"{name}_to_rgb")(x)


def _preprocess(x, arch: Architecture, pixel_range: str, rgb_input: bool, name: str):
    """preprocess_input as layers (no Lambda, so safe_mode loading accepts the model)."""
    if arch.bgr and rgb_input:
        x = keras.ops.flip(x, axis=-1)
    scale = arch.scale * (255.0 if pixel_range == "0_1" else 1.0)
    if scale == 1.0 and not any(arch.offset):
        return x
    return keras.layers.Rescaling(scale=scale, offset=list(arch.offset), name=f"{name}_preprocess")(x)


def _match_keras_imagenet_efficientnet(backbone: keras.Model) -> None:
    """Make an EfficientNet loaded from a weights path compute what weights="imagenet" does.

    With weights="imagenet" (only) Keras adds Rescaling(1 / sqrt(stddev)) after the stem's
    Normalization (tensorflow/tensorflow#49930); a path skips it. Fold the same factor into
    the Normalization's variance: (x - m) / sqrt(v) / sqrt(s) == (x - m) / sqrt(v * s).
    """
    normalization = next(layer for layer in backbone.layers if isinstance(layer, keras.layers.Normalization))
    variance = keras.ops.convert_to_numpy(normalization.adapt_variance)
    normalization.adapt_variance.assign(variance * np.array(EFFICIENTNET_STDDEV_RGB, dtype=variance.dtype))
    normalization.finalize_state()


def build_applications_backbone(input_shape, task, params, name, sample=None) -> keras.Model:
    """Adapt the input, preprocess it for the architecture, then the headless backbone."""
    arch = ARCHITECTURES[params["architecture"]]
    height, width, channels = input_shape
    size = adapted_size(height, width, params["input_size"]) if params["adapt_input"] else (height, width)
    imagenet = params["weights"] == "imagenet"
    weights_path = _cached_weights(params, size, name) if imagenet else None

    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = inputs
    if params["adapt_input"] and size != (height, width):
        x = keras.layers.Resizing(size[0], size[1], name=f"{name}_resize")(x)
    if params["adapt_input"] and channels != 3:
        x = _to_rgb(x, channels, name)
    x = _preprocess(x, arch, params["pixel_range"], rgb_input=channels == 3, name=name)

    options: dict[str, Any] = {"alpha": params["alpha"]} if params["architecture"] == "MobileNetV2" else {}
    try:
        backbone = arch.constructor(
            include_top=False, weights=None if weights_path is None else str(weights_path),
            input_shape=(size[0], size[1], 3), pooling=params["pooling"],
            name=f"{name}_{params['architecture'].lower()}", **options,
        )
    except (ValueError, OSError) as error:
        if weights_path is None:
            raise
        raise ValueError(
            f"Member '{name}' (template 'applications_backbone'): the weights file {weights_path} "
            f"does not fit {params['architecture']} ({error}). Replace it with the official file "
            f"from {arch.weights_url}{weights_path.name}, or use weights='none'."
        ) from error
    if imagenet and params["architecture"] == "EfficientNetB0":
        _match_keras_imagenet_efficientnet(backbone)
    # No `backbone(x, training=False)`: a Keras 3 functional graph replaces a node's
    # training argument with the outer call's (functional.py, operation_fn), so it would not
    # keep BatchNormalization in inference mode during fit. A frozen BatchNormalization
    # layer (trainable=False) does run in inference mode.
    return keras.Model(inputs, backbone(x), name=name)


def _input_check(shape: tuple, params: dict | None = None) -> str | None:
    height, width, channels = shape
    if channels is None:
        return "needs images with a known number of channels"
    if params is None or params["adapt_input"]:
        return None
    if channels != 3 or any(d is not None and d < MIN_SIZE for d in (height, width)):
        return (f"needs 3-channel (RGB) images of at least {MIN_SIZE}x{MIN_SIZE} when adapt_input "
                f"is false (set adapt_input to true to resize and map channels to RGB inside the member)")
    return None


register(Template(
    name="applications_backbone",
    title="Keras Applications backbone",
    description="A MobileNetV2, EfficientNetB0 or ResNet50 without its classifier, outputting "
                "pooled image features; with ImageNet weights from the local Keras cache it is "
                "the frozen base of a transfer stack.",
    params=(
        ParamSpec("architecture", "choice", "MobileNetV2", "which keras.applications model",
                  choices=tuple(ARCHITECTURES)),
        ParamSpec("weights", "choice", "none",
                  "none = random initialization; imagenet = the pretrained file from the local "
                  "Keras cache (~/.keras/models or $KERAS_HOME/models), never downloaded",
                  choices=("none", "imagenet")),
        ParamSpec("pooling", "choice", "avg", "global pooling of the last feature map",
                  choices=("avg", "max")),
        ParamSpec("alpha", "choice", 1.0, "MobileNetV2 width multiplier (0.35 is small and fast); "
                  "ignored by the other architectures", choices=MOBILENET_V2_ALPHAS),
        ParamSpec("adapt_input", "bool", True,
                  "resize small images up to input_size and map 1 (or 2, 4+) channels to RGB"),
        ParamSpec("input_size", "int", MIN_SIZE,
                  "with adapt_input: smaller images are scaled up so their shorter side is this",
                  MIN_SIZE, 1024),
        ParamSpec("pixel_range", "choice", "0_1", "range of the input pixel values (StackLab's "
                  "built-in images are 0-1)", choices=("0_1", "0_255")),
    ),
    input_ranks=(3,),
    builder=build_applications_backbone,
    check_input=_input_check,
    tags=("image", "encoder", "pretrained"),
))
