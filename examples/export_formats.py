"""Train two tiny models, export each to SavedModel, ONNX and LiteRT, and print how closely each
runtime reproduces Keras.

    python examples/export_formats.py [--out DIR]

- a tabular model like a CSV run's model.keras: a dict of raw columns ("age (years)" a
  number, "color" text), with Normalization and StringLookup inside;
- a small CNN on scikit-learn's 8x8 digits, fed raw pixel values (0-16), Rescaling inside.

Each export runs in its own runtime (TFSMLayer, onnxruntime, the ai_edge_litert interpreter)
on 100 held-out samples and is written only if it matches Keras within 1e-4
(`core.export.formats.export_model`). ONNX and LiteRT need
`pip install -r requirements-export.txt`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from core.export.formats import FILE_NAMES, FORMATS, ExportError, export_model, missing_packages_message  # noqa: E402


def tabular_model_and_data(rng: np.random.Generator):
    rows = 600
    age = rng.uniform(18, 80, size=(rows, 1)).astype("float32")
    color = rng.choice(["blue", "red", "green"], size=(rows, 1))
    label = ((age[:, 0] > 45) ^ (color[:, 0] == "red")).astype("int64")
    inputs = {"age (years)": keras.Input(shape=(1,), name="age (years)"),
              "color": keras.Input(shape=(1,), name="color", dtype="string")}
    normalization = keras.layers.Normalization()
    normalization.adapt(age[:400])  # statistics of the training rows only
    lookup = keras.layers.StringLookup(vocabulary=["blue", "red"], output_mode="one_hot")  # "green": out of vocabulary
    x = keras.layers.Concatenate()([normalization(inputs["age (years)"]), lookup(inputs["color"])])
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x), name="tabular")
    data = {"age (years)": age, "color": color.astype(object)}
    train = {key: value[:400] for key, value in data.items()}
    held_out = {key: value[400:] for key, value in data.items()}
    return model, train, label[:400], held_out


def digits_model_and_data():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[..., None].astype("float32")  # raw values 0-16
    inputs = keras.Input(shape=(8, 8, 1), name="pixels")
    x = keras.layers.Rescaling(1 / 16)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x), name="digits_cnn")
    return model, images[:1500], digits.target[:1500], images[1500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the exported files (default: a temporary folder)")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="stacklab-export-"))
    failures = 0
    for model, x, y, held_out in (tabular_model_and_data(rng), digits_model_and_data()):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if isinstance(x, dict):  # Keras's fit refuses numpy text arrays; train_on_batch takes them
            for _ in range(30):
                model.train_on_batch(x, y)
        else:
            model.fit(x, y, epochs=3, batch_size=32, verbose=0)
        print(f"{model.name}:")
        for fmt in FORMATS:
            reason = missing_packages_message(fmt)
            if reason:
                print(f"  {fmt}: skipped: {reason}")
                continue
            try:
                result = export_model(model, fmt, out / model.name / FILE_NAMES[fmt], held_out)
            except ExportError as error:
                failures += 1
                print(f"  {fmt}: {error}")
                continue
            print(f"  {result.summary()}")
    print(f"files in {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
