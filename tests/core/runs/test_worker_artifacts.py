"""A real worker exports the end-to-end model.keras, stack.keras and data.json of a CSV run."""

import json

import keras
import numpy as np
import pytest

from core import runs
from core.data import validation_inputs
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.storage.uploads import store_bytes

pytestmark = pytest.mark.slow


def test_a_csv_run_exports_the_end_to_end_model_the_stack_and_the_data_card(stacklab_home):
    rng = np.random.default_rng(0)
    rows = ["height,shape,kind"] + [f"{h:.2f},{s},{'tall' if h > 1.5 else 'short'}"
                                     for h, s in zip(rng.uniform(1, 2, 80), rng.choice(["round", "flat"], 80))]
    ref = store_bytes(("\n".join(rows) + "\n").encode(), "plants.csv")
    spec = StackSpec(name="plants",
                     members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                              MemberSpec("head", template="dense_head", params={"hidden_units": []})),
                     train=TrainSpec(epochs=2, batch_size=16, validation_split=0.25),
                     dataset=DatasetSpec(source="csv", path=ref, target="kind"))
    run = runs.wait(runs.start(spec), timeout_s=180)
    assert run.status == "finished", run.error
    artifacts = runs.artifacts(run.id)
    assert {"model.keras", "stack.keras", "data.json"} <= set(artifacts)
    card = json.loads((run.folder / "data.json").read_text())
    assert card["class_names"] == ["short", "tall"] and [i["name"] for i in card["inputs"]] == ["height", "shape"]
    assert card["inputs"][1]["vocabulary"] == ["flat", "round"]
    model = keras.saving.load_model(run.folder / "model.keras", safe_mode=True)
    inputs, y = validation_inputs(spec)
    probabilities = keras.ops.convert_to_numpy(model(inputs))[:, 0]
    accuracy = float(((probabilities > 0.5).astype(int) == y).mean())
    assert accuracy == pytest.approx(runs.metrics(run.id)[-1]["metrics"]["val_accuracy"], abs=1e-6)
    stack = keras.saving.load_model(run.folder / "stack.keras", safe_mode=True)
    assert stack.input_shape == (None, 1 + 3)  # height, then the OOV slot and the two shapes
