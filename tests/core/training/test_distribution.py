"""Data parallel training without a GPU: JAX over forced CPU devices, TensorFlow over logical ones.

Each case runs in a fresh process, because the number of CPU devices is fixed when the
backend starts (XLA_FLAGS for JAX; STACKLAB_CPU_DEVICES for both, read by
`core.training.backend.configure_devices`).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow

# The seed's sequential stack (examples/seed_sequential.json) for 3 epochs. validation_split
# 0.25 leaves 1,348 training samples, a multiple of 4: JAX shards every batch evenly, so with
# that many samples both runs see the same batches in the same order.
TRAIN_BOTH = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    import keras, numpy as np
    from core.spec import DistributionSpec, load_spec
    from core.spec.events import EventLog
    from core.export.artifacts import export_run
    from core.training.loop import train

    out = Path(sys.argv[1])
    spec = load_spec("examples/seed_sequential.json")
    spec = spec.replace(train=dataclasses.replace(spec.train, epochs=3, validation_split=0.25))
    curves = {}
    for strategy in ("none", "data_parallel"):
        log = EventLog()
        run = spec.replace(train=dataclasses.replace(spec.train, distribution=DistributionSpec(strategy=strategy)))
        result = train(run, None, log, checkpoint_path=out / f"{strategy}.npz")
        started = log.of_kind("started")[0]
        curves[strategy] = {"loss": [row["loss"] for row in result.history],
                            "val_loss": [row["val_loss"] for row in result.history],
                            "devices": list(started.devices), "strategy": started.strategy,
                            "train_samples": started.train_samples, "status": result.status}
        if strategy == "data_parallel":
            # The trained model leaves the distribution and still saves and predicts.
            paths = export_run(result.model, run, result.history, out / "export", compile_args=result.compile_args,
                               prepared=result.prepared)
            reloaded = keras.saving.load_model(paths["stack.keras"])
            x = result.prepared.split.x_val[:8]
            np.testing.assert_allclose(reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0),
                                       rtol=1e-5, atol=1e-6)
    print("CURVES" + json.dumps(curves))
""")

# How close the curves must be. The training loss: float32 sums over 4 shards of each
# batch in another order than over one device, and the one-device run is not jitted (JAX
# data parallel is). The validation loss also leaves out 1 of the 449 validation samples
# (JAX splits every batch evenly over the 4 devices): measured 0.2 % apart.
LOSS_TOLERANCE = 1e-3
VAL_LOSS_TOLERANCE = 1e-2


def _run(script: str, env: dict[str, str], *args: str, timeout: int = 900) -> str:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _curves(stdout: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith("CURVES"))
    return json.loads(line[len("CURVES"):])


def test_jax_data_parallel_over_4_cpu_devices_matches_one_device(tmp_path):
    stdout = _run(TRAIN_BOTH, {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
                  str(tmp_path))
    curves = _curves(stdout)
    one, four = curves["none"], curves["data_parallel"]
    assert len(four["devices"]) == 4 and four["strategy"] == "data_parallel", four
    assert len(one["devices"]) == 1 and one["strategy"] == "none", one
    assert four["train_samples"] == one["train_samples"] == 1348
    assert one["status"] == four["status"] == "finished"
    assert four["loss"] == pytest.approx(one["loss"], rel=LOSS_TOLERANCE), (one["loss"], four["loss"])
    assert four["val_loss"] == pytest.approx(one["val_loss"], rel=VAL_LOSS_TOLERANCE), (one, four)
    assert four["loss"][-1] < four["loss"][0]  # it learned


TF_MIRRORED = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    from core.spec import DatasetSpec, DistributionSpec, MemberSpec, StackSpec, TrainSpec
    from core.spec.events import EventLog
    from core.training.backend import backend_name
    from core.training.loop import train

    out = Path(sys.argv[1])
    assert backend_name() == "tensorflow", backend_name()
    spec = StackSpec(name="mirrored", mode="sequential",
        members=(MemberSpec("base", template="mlp", params={"hidden_units": [16]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=4, batch_size=16, distribution=DistributionSpec(strategy="data_parallel")),
        dataset=DatasetSpec(name="iris"))
    first = EventLog()
    # Stopped after 2 of 4 epochs (a smaller budget, as a killed run would have), then resumed.
    train(spec.replace(train=dataclasses.replace(spec.train, epochs=2)), None, first,
          checkpoint_path=out / "checkpoint.npz")
    resumed = EventLog()
    result = train(spec, None, resumed, checkpoint_path=out / "checkpoint.npz", resume=True)
    started = resumed.of_kind("started")[0]
    print("RESULT" + json.dumps({"devices": list(started.devices), "strategy": started.strategy,
                                 "initial_epoch": started.initial_epoch, "status": result.status,
                                 "epochs": [row["epoch"] for row in result.history],
                                 "resumed_epochs": [e.epoch for e in resumed.of_kind("epoch")]}))
""")


def test_tensorflow_mirrored_strategy_over_2_logical_cpus_trains_checkpoints_and_resumes(tmp_path):
    stdout = _run(TF_MIRRORED, {"KERAS_BACKEND": "tensorflow", "STACKLAB_CPU_DEVICES": "2"}, str(tmp_path))
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT"))
    result = json.loads(line[len("RESULT"):])
    assert result["strategy"] == "data_parallel"
    assert result["devices"] == ["/device:CPU:0", "/device:CPU:1"], result
    assert result["status"] == "finished"
    assert result["initial_epoch"] == 2 and result["resumed_epochs"] == [3, 4]
    assert result["epochs"] == [1, 2, 3, 4]


TF_UNEVEN = textwrap.dedent("""
    import dataclasses, sys
    import numpy as np
    from core.data import Dataset
    from core.spec import DatasetSpec, DistributionSpec, MemberSpec, StackSpec, TrainSpec
    from core.spec.events import EventLog
    from core.spec.tasks import TaskInfo
    from core.training.loop import train

    # 631 samples: 504 to train and 127 to validate at split 0.2, neither a multiple of 2 (a last
    # batch of 63 over 2 devices fails MirroredStrategy: "AddN must have the same size").
    rng = np.random.default_rng(0)
    x = rng.normal(size=(631, 6)).astype("float32")
    task = TaskInfo(kind="multiclass", input_shape=(6,), num_classes=3)
    data = Dataset(name="odd", x=x, y=(x[:, 0] > 0).astype("int64") + (x[:, 1] > 1), task=task)
    spec = StackSpec(name="odd", members=(MemberSpec("base", template="mlp", params={"hidden_units": [8]}),
                                          MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=2, batch_size=64, distribution=DistributionSpec(strategy="data_parallel")),
        dataset=DatasetSpec(name="iris"))
    log = EventLog()
    result = train(spec, data, log)
    print("RESULT", result.status, log.of_kind("started")[0].train_samples, len(log.of_kind("started")[0].devices))
""")


def test_mirrored_strategy_trains_when_the_splits_do_not_divide_by_the_devices():
    stdout = _run(TF_UNEVEN, {"KERAS_BACKEND": "tensorflow", "STACKLAB_CPU_DEVICES": "2"})
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT"))
    status, samples, devices = line.split()[1:]
    assert (status, devices) == ("finished", "2")
    assert int(samples) % 2 == 0  # cut to a multiple of the devices
