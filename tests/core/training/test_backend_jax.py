"""The core runs unchanged on KERAS_BACKEND=jax: build, train, checkpoint, resume, export."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import dataclasses
    import sys
    from pathlib import Path
    import keras, numpy as np
    from core.training.backend import backend_name
    from core.data import load_dataset
    from core.spec.events import EventLog
    from core.export.artifacts import export_run
    from core.spec import DatasetSpec, FineTuneSpec, MemberSpec, StackSpec, TrainSpec
    from core.training.loop import train

    out = Path(sys.argv[1])
    assert backend_name() == "jax", backend_name()
    spec = StackSpec(name="jax", mode="transfer",
        members=(MemberSpec("base", template="mlp", params={"hidden_units": [16, 8]}),),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
        train=TrainSpec(epochs=4, batch_size=16, fine_tune=FineTuneSpec(start_epoch=3)),
        dataset=DatasetSpec(name="iris"))
    data = load_dataset(spec.dataset)
    train(spec.replace(train=dataclasses.replace(spec.train, epochs=2)), data,
          checkpoint_path=out / "checkpoint.npz")
    log = EventLog()
    result = train(spec, data, log, checkpoint_path=out / "checkpoint.npz", resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4], result.history
    assert [e.epoch for e in log.of_kind("epoch")] == [3, 4]
    assert log.of_kind("epoch")[0].member_updates["base"] > 0  # fine-tuning
    paths = export_run(result.model, spec, result.history, out, compile_args=result.compile_args,
                       prepared=result.prepared)
    # model.keras takes raw samples (its Normalization is the training split's); stack.keras the encoded ones.
    from core.build.preprocessing import PreprocessingLayers
    encoded = PreprocessingLayers(result.prepared.preprocessing).encode(data.x[:5])
    reloaded = keras.saving.load_model(paths["model.keras"])
    np.testing.assert_allclose(reloaded.predict(data.x[:5], verbose=0),
                               result.model.predict(encoded, verbose=0), rtol=1e-5, atol=1e-6)
    stack = keras.saving.load_model(paths["stack.keras"])
    np.testing.assert_allclose(stack.predict(encoded, verbose=0), result.model.predict(encoded, verbose=0),
                               rtol=1e-5, atol=1e-6)
    print("ok", result.status)
""")


def test_train_resume_and_export_on_jax(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok finished")


def test_a_model_saved_under_tensorflow_loads_under_jax(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.save(tmp_path / "tf.keras")
    code = ("import sys; from core.model_files.loading import load_model_file; import keras; "
            "m = load_model_file(sys.argv[1]); print(keras.backend.backend(), m.count_params())")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "tf.keras")], capture_output=True,
                            text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["jax", "15"]
