"""Predict on new CSV rows with a trained model, as `python -m core predict` does.

Trains the customers stack of examples/csv_end_to_end.py headless (a CSV with number
columns, a text column and a text label), then predicts on rows it has never seen: one row
per customer with the predicted class name and the probability of each class. The rows
carry a column the model does not take (ignored, and said so) and a colour it never saw
(the out-of-vocabulary slot). Last, a file with a column missing is refused in one line.

    python examples/predict_csv.py [--out DIR] [--epochs 5]

The same from the command line, on the folder this script writes:

    python -m core predict DIR/model.keras DIR/new_customers.csv --out DIR/predictions.csv
"""

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def sibling(name: str):
    """Another example of this folder, as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the run's files (default: a temporary one)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="stacklab-predict-"))
    out.mkdir(parents=True, exist_ok=True)
    customers = sibling("csv_end_to_end")
    last = customers.train_with_stacklab(customers.write_csv(out / "customers.csv"), out, args.epochs)
    print(f"trained: val_accuracy {last['val_accuracy']:.3f}; model and data card in {out}")

    import pandas as pd

    from core.data import DataError
    from core.predict import predict

    new = pd.read_csv(customers.write_csv(out / "fresh.csv", rows=8, seed=1)).drop(columns="bought")
    new.insert(0, "customer", [f"c{i}" for i in range(len(new))])  # not a model input: ignored
    new.loc[0, "color"] = "violet"  # never seen in training
    new.to_csv(out / "new_customers.csv", index=False)
    # The data card (data.json) next to model.keras names the classes.
    table = predict(out / "model.keras", str(out / "new_customers.csv"))
    for note in table.attrs["notes"]:
        print(note)
    print(pd.concat([new[["customer", "color"]], table], axis=1).to_string(index=False, float_format="%.3f"))
    table.to_csv(out / "predictions.csv", index=False)
    print(f"wrote {out / 'predictions.csv'}")

    new.drop(columns="income").to_csv(out / "no_income.csv", index=False)
    try:
        predict(out / "model.keras", str(out / "no_income.csv"))
    except DataError as refusal:
        print(f"refused: {refusal}")


if __name__ == "__main__":
    main()
