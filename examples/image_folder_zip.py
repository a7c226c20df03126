"""Train a tiny CNN on a ZIP of image folders, headless: the path a dashboard upload takes.

Makes a ZIP of coloured shapes (circles, squares and triangles on a dark background, one
folder per class inside a folder `shapes/`, as `keras.utils.image_dataset_from_directory`
reads) in a temporary folder, loads it as StackLab's "images" dataset (the archive is
inspected, nothing is extracted), and trains a small CNN stack on it for a few epochs.

    python examples/image_folder_zip.py [--epochs 8] [--per-class 40] [--size 32] [--keep DIR]
"""

import argparse
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up lines, as the CLI hides them

from core.data import load_dataset  # noqa: E402
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402
from core.spec.events import EpochEnd  # noqa: E402

SHAPES = ("circle", "square", "triangle")
SIDE = 48  # pixels of each generated PNG; the dataset resizes them to --size


def shape_png(shape: str, rng: np.random.Generator) -> bytes:
    """One PNG: a shape of a random bright colour, size and place on a dark background."""
    image = Image.new("RGB", (SIDE, SIDE), tuple(int(v) for v in rng.integers(0, 60, 3)))
    draw = ImageDraw.Draw(image)
    radius = int(rng.integers(8, 18))
    cx, cy = (int(v) for v in rng.integers(radius, SIDE - radius, 2))
    colour = tuple(int(v) for v in rng.integers(120, 256, 3))
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def make_shapes_zip(path: Path, per_class: int | dict[str, int] = 40, seed: int = 0) -> Path:
    """A ZIP of PNGs in shapes/circle/, shapes/square/ and shapes/triangle/: `per_class` of
    each, or {shape: count} for classes of different sizes."""
    rng = np.random.default_rng(seed)
    counts = per_class if isinstance(per_class, dict) else dict.fromkeys(SHAPES, per_class)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for shape, count in counts.items():
            for index in range(count):
                archive.writestr(f"shapes/{shape}/{index:03d}.png", shape_png(shape, rng))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--size", type=int, default=32, help="height and width the images are resized to")
    parser.add_argument("--keep", type=Path, help="write the ZIP into this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        archive = make_shapes_zip(folder / "shapes.zip", args.per_class)
        dataset_spec = DatasetSpec(source="images", name="shapes", path=str(archive), image_size=(args.size, args.size))
        dataset = load_dataset(dataset_spec)
        print(f"{archive}: x {dataset.x.shape} ({dataset.x.min():.0f}..{dataset.x.max():.0f}), "
              f"classes {dataset.class_counts()}")
        spec = StackSpec(
            name="shapes_cnn",
            members=(MemberSpec("features", template="cnn_features", params={"filters": [8, 16], "padding": "same"}),
                     MemberSpec("classifier", template="dense_head", params={"hidden_units": [32]})),
            train=TrainSpec(epochs=args.epochs, batch_size=16, validation_split=0.25, learning_rate=3e-3),
            dataset=dataset_spec)
        from core.training.loop import train  # imports Keras: only to train (tests import the maker alone)

        def show(event) -> None:
            if isinstance(event, EpochEnd):
                print(f"epoch {event.epoch}: " + "  ".join(f"{k} {v:.3f}" for k, v in event.metrics.items()),
                      flush=True)

        result = train(spec, sink=show)  # reads the ZIP from the spec, as a run's worker does
        print(f"{result.status} after {result.epochs_done} epochs")


if __name__ == "__main__":
    main()
