"""Create examples/pretrained_model.keras (and .h5), the pretrained base of seed_transfer.json.

The seed's third example loads a pretrained feature extractor, freezes it and trains a new
head. This script makes one offline: the seed's model_a (Conv2D 32 3x3 -> MaxPooling ->
Flatten), pretrained for a few epochs on the first half of the built-in digits (with a
throwaway classifier on top), saved in both Keras formats.

    python examples/make_pretrained.py [--epochs 3]
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import keras  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.spec import DatasetSpec  # noqa: E402


def build_model_a() -> keras.Model:
    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu", name="conv2d"),
        keras.layers.MaxPooling2D((2, 2), name="max_pooling2d"),
        keras.layers.Flatten(name="flatten"),
    ], name="model_a")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "pretrained_model.keras")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    digits = load_dataset(DatasetSpec(source="builtin", name="digits28"))
    half = digits.num_samples // 2
    model_a = build_model_a()
    pretraining = keras.Sequential([model_a, keras.layers.Dense(10, activation="softmax")])
    pretraining.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    pretraining.fit(digits.x[:half], digits.y[:half], epochs=args.epochs, batch_size=64, verbose=2)
    model_a.save(args.out)
    model_a.save(args.out.with_suffix(".h5"))
    print(f"wrote {args.out} and {args.out.with_suffix('.h5')}")


if __name__ == "__main__":
    main()
