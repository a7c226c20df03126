"""Train on a small generated CSV headless, then predict on raw rows with nothing but Keras.

The CSV has number columns, a text column and a text label. StackLab fits the scaling and
the vocabulary on the training split, trains the stack on the encoded arrays and exports
model.keras end to end: a dict of raw columns in, class probabilities out. The second half
of this script is what a user does outside StackLab: `keras.saving.load_model(...,
safe_mode=True)` and a call on raw values, including a colour the model never saw.

    python examples/csv_end_to_end.py [--out DIR] [--epochs 5]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402

COLORS = ("red", "green", "blue")


def write_csv(path: Path, rows: int = 400, seed: int = 0) -> Path:
    """Customers: age, income and a favourite colour; the label says whether they bought."""
    rng = np.random.default_rng(seed)
    age = rng.normal(40, 12, rows).round(1)
    income = rng.lognormal(3, 0.5, rows).round(2)
    color = rng.choice(COLORS, rows)
    score = (age - 40) / 12 + np.where(color == "red", 1.5, np.where(color == "green", -1.0, 0.0))
    bought = np.where(score + rng.normal(0, 0.3, rows) > 0, "yes", "no")
    lines = ["age,income,color,bought"] + [f"{a},{i},{c},{b}" for a, i, c, b in zip(age, income, color, bought)]
    path.write_text("\n".join(lines) + "\n")
    return path


def train_with_stacklab(csv: Path, out: Path, epochs: int) -> dict:
    """Train headless as `python -m core train` does and export the run's artifacts into `out`."""
    from core.build.stacking import member_files
    from core.export.artifacts import export_run
    from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
    from core.training.loop import train

    spec = StackSpec(
        name="customers",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [16]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=epochs, batch_size=16, validation_split=0.25, learning_rate=0.01),
        dataset=DatasetSpec(source="csv", path=str(csv), target="bought"))
    result = train(spec)
    export_run(result.model, spec, result.history, out, member_sources=member_files(spec),
               compile_args=result.compile_args, prepared=result.prepared)
    return result.history[-1]


def predict_with_plain_keras(model_path: Path, card_path: Path) -> None:
    """What a user does with the download: no StackLab import, raw values in."""
    import keras

    model = keras.saving.load_model(model_path, safe_mode=True)
    class_names = json.loads(card_path.read_text())["class_names"]
    rows = {"age": np.array([[25.0], [58.0], [41.0]], np.float32),
            "income": np.array([[18.5], [30.0], [22.0]], np.float32),
            "color": np.array([["green"], ["red"], ["violet"]])}  # "violet": never seen in training
    # Call the model on the dict: Keras's predict() refuses numpy string arrays.
    probabilities = keras.ops.convert_to_numpy(model(rows))[:, 0]
    for index, probability in enumerate(probabilities):
        name = class_names[int(probability > 0.5)]
        print(f"row {index}: {class_names[1]!r} with probability {probability:.3f} -> {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="stacklab-csv-"))
    out.mkdir(parents=True, exist_ok=True)
    last = train_with_stacklab(write_csv(out / "customers.csv"), out, args.epochs)
    print(f"trained: val_accuracy {last['val_accuracy']:.3f}; artifacts in {out}")
    predict_with_plain_keras(out / "model.keras", out / "data.json")


if __name__ == "__main__":
    main()
