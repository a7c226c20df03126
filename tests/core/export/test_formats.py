"""core.export.formats: SavedModel, ONNX and LiteRT exports that run in their runtimes as Keras does,
layers a format cannot take named, the model file untouched, and the optional packages named."""

import argparse
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import core.data
import core.spec
from core.export import cli, formats
from core.export.formats import (
    FILE_NAMES,
    FORMATS,
    INSTALL_COMMAND,
    ExportError,
    MissingExportPackages,
    export_model,
    missing_packages,
)

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = 120  # more than the 100 an export compares


def array_model() -> keras.Model:
    features = keras.Input(shape=(3,), name="features")
    hidden = keras.layers.Dense(8, activation="relu", bias_initializer="random_normal")(features)
    return keras.Model(features, keras.layers.Dense(2, activation="softmax", name="head")(hidden))


def dict_model() -> keras.Model:
    """A tabular end-to-end model as the contract has it: one (1,) input per column, named
    after it ("age (years)" is a name TensorFlow's signatures refuse)."""
    age = keras.Input(shape=(1,), name="age (years)", dtype="float32")
    color = keras.Input(shape=(1,), name="color", dtype="string")
    scaled = keras.layers.Normalization(mean=40.0, variance=100.0)(age)
    encoded = keras.layers.StringLookup(vocabulary=["blue", "red"], output_mode="one_hot")(color)
    merged = keras.layers.Concatenate()([scaled, encoded])
    hidden = keras.layers.Dense(8, activation="relu", bias_initializer="random_normal")(merged)
    return keras.Model({"age (years)": age, "color": color},
                       keras.layers.Dense(3, activation="softmax", name="head")(hidden))


def hashing_model() -> keras.Model:
    """Hashing runs TensorFlow's StringToHashBucketFast: no ONNX mapping, no built-in LiteRT kernel."""
    color = keras.Input(shape=(1,), name="color", dtype="string")
    hashed = keras.layers.Hashing(num_bins=4, output_mode="one_hot", name="color_hash")(color)
    return keras.Model({"color": color}, keras.layers.Dense(1, name="head")(hashed))


def samples_for(kind: str) -> dict | np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "array":
        return rng.normal(size=(SAMPLES, 3)).astype("float32")
    # "green" is not in the vocabulary: the out-of-vocabulary slot must travel too
    return {"age (years)": rng.uniform(18, 80, size=(SAMPLES, 1)).astype("float32"),
            "color": rng.choice(["blue", "red", "green"], size=(SAMPLES, 1))}


def run_file(format: str, path: Path, inputs, folder: Path, names=None) -> np.ndarray:  # noqa: A002
    """The exported file's output in its own runtime, loaded here independently of formats.py;
    `names` maps the model's inputs to the file's (where TensorFlow renamed them)."""
    if isinstance(inputs, dict) and names:
        inputs = {names[key]: value for key, value in inputs.items()}
    if format == "saved_model":
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        import tensorflow as tf  # TensorFlow Serving's view: the serving_default signature, by name

        signature = tf.saved_model.load(str(folder / path.stem)).signatures["serving_default"]
        feed = inputs if isinstance(inputs, dict) else {next(iter(signature.structured_input_signature[1])): inputs}
        return signature(**{name: tf.constant(value) for name, value in feed.items()})["output_0"].numpy()
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feed = inputs if isinstance(inputs, dict) else {session.get_inputs()[0].name: inputs}
        return session.run(None, feed)[0]
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    feed = inputs if isinstance(inputs, dict) else {next(iter(runner.get_input_details())): inputs}
    return runner(**feed)["output_0"]


def first_100(kind: str):
    samples = samples_for(kind)
    if kind == "array":
        return samples[:100]
    return {"age (years)": samples["age (years)"][:100], "color": samples["color"][:100].astype(object)}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every format of both models, exported once for the module: (kind, format) -> (result, model)."""
    folder = tmp_path_factory.mktemp("exports")
    models = {"array": array_model(), "dict": dict_model()}
    return {(kind, fmt): (export_model(model, fmt, folder / f"{kind}-{FILE_NAMES[fmt]}", samples_for(kind)), model)
            for kind, model in models.items() for fmt in FORMATS}


@pytest.mark.parametrize("kind", ["array", "dict"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_runs_in_its_runtime_as_keras_does(exports, kind, fmt, tmp_path):
    result, model = exports[(kind, fmt)]
    inputs = first_100(kind)
    expected = np.asarray(model(inputs, training=False))
    received = run_file(fmt, result.path, inputs, tmp_path, result.input_names)
    assert received.shape == expected.shape
    assert np.max(np.abs(received - expected)) <= 1e-4
    assert np.ptp(expected, axis=0).max() > 1e-3  # the samples give different answers: a real comparison
    assert result.samples == 100 and result.max_abs_diff <= 1e-4 and result.format == fmt
    assert result.size_bytes == result.path.stat().st_size > 0
    assert "on 100 samples" in result.summary()


@pytest.mark.parametrize("fmt, in_file", [("saved_model", "age_years"), ("litert", "age_years"),
                                          ("onnx", "age (years)")])
def test_a_column_name_tensorflow_refuses_is_renamed_in_signatures_and_kept_in_onnx(exports, fmt, in_file):
    result = exports[("dict", fmt)][0]
    assert result.input_names == {"age (years)": in_file, "color": "color"}
    assert ("inputs renamed in the file: 'age (years)' -> 'age_years'" in result.summary()) == (fmt != "onnx")


def test_signature_names_are_valid_and_unique_ignoring_case():
    names = formats._signature_names(["Age", "age", "sepal length (cm)", "sepal_length_cm", "_id", "Größe", "(", "a.b"])
    assert names == {"Age": "Age", "age": "age_2", "sepal length (cm)": "sepal_length_cm_2",
                     "sepal_length_cm": "sepal_length_cm", "_id": "id", "Größe": "Gr_e", "(": "input", "a.b": "a.b"}


def test_an_unseen_category_gets_the_out_of_vocabulary_slot_in_onnx_and_litert(exports, tmp_path):
    model = exports[("dict", "onnx")][1]
    inputs = {"age (years)": np.full((2, 1), 40.0, "float32"),
              "color": np.array([["green"], ["purple"]], dtype=object)}
    expected = np.asarray(model(inputs, training=False))
    for fmt in ("onnx", "litert"):
        result = exports[("dict", fmt)][0]
        received = run_file(fmt, result.path, inputs, tmp_path / fmt, result.input_names)
        np.testing.assert_allclose(received, expected, atol=1e-5)
    np.testing.assert_allclose(expected[0], expected[1])  # both unseen colours share one slot


@pytest.fixture(scope="module")
def hashing_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hashing") / "model.keras"
    hashing_model().save(path)
    return path


@pytest.mark.parametrize("fmt, why", [("onnx", "which tf2onnx cannot convert to ONNX"),
                                      ("litert", "which the LiteRT runtime has no kernel for")])
def test_a_layer_the_format_cannot_take_is_named_and_the_model_file_is_untouched(hashing_file, fmt, why):
    before = hashing_file.read_bytes()
    target = hashing_file.parent / FILE_NAMES[fmt]
    with pytest.raises(ExportError, match=rf"layer 'color_hash' \(Hashing\) \(fed by column 'color'\) uses the "
                                          rf"TensorFlow op StringToHashBucketFast, {why}.*export to SavedModel"):
        export_model(hashing_file, fmt, target, {"color": np.array([["red"], ["blue"]])})
    assert hashing_file.read_bytes() == before
    assert sorted(p.name for p in hashing_file.parent.iterdir()) == ["model.keras"]  # no file, no leftovers


def test_the_same_model_exports_to_saved_model(hashing_file, tmp_path):
    result = export_model(hashing_file, "saved_model", tmp_path / "saved_model.zip",
                          {"color": np.array([["red"], ["blue"], ["green"]])})
    assert result.max_abs_diff <= 1e-4 and result.samples == 3


def test_a_converter_failure_names_the_layer_from_its_message(hashing_file, monkeypatch):
    said = ("<unknown>:0: note: see current operation\n<unknown>:0: error: loc(fused[\"MatMul:\", "
            "\"functional_1/head_1/MatMul@__inference_serve_42\"]): 'tf.MatMul' op is not supported")

    def refuse(self, filepath, format="tf_saved_model", **kwargs):  # noqa: A002
        raise RuntimeError(said)

    monkeypatch.setattr(keras.Model, "export", refuse)
    before = hashing_file.read_bytes()
    with pytest.raises(ExportError, match=r"^LiteRT export failed at layer 'head' \(Dense\): the converter said: "
                                          r".*'tf.MatMul' op is not supported\. The model file is unchanged"):
        export_model(hashing_file, "litert", hashing_file.parent / "model.tflite", {"color": np.array([["red"]])})
    assert hashing_file.read_bytes() == before
    assert sorted(p.name for p in hashing_file.parent.iterdir()) == ["model.keras"]


def test_an_export_that_differs_from_keras_is_refused_and_nothing_is_written(monkeypatch, tmp_path):
    tmp_path = tmp_path / "out"  # beside the test's own STACKLAB_HOME
    tmp_path.mkdir()
    onnx_outputs = formats.RUNTIMES["onnx"]
    monkeypatch.setitem(formats.RUNTIMES, "onnx", lambda *args: [v + 1e-3 for v in onnx_outputs(*args)])
    with pytest.raises(ExportError, match=r"ONNX export does not match Keras: max \|ONNX - Keras\| = 0.001 on 5 "
                                          r"samples, over the 1e-04 limit; nothing was written\. "
                                          r"The model file is unchanged; export to SavedModel instead"):
        export_model(array_model(), "onnx", tmp_path / "model.onnx", samples_for("array")[:5])
    assert list(tmp_path.iterdir()) == []


def test_a_runtime_that_cannot_run_the_file_says_so_and_nothing_is_written(monkeypatch, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()

    def refuse(path, inputs, names):
        raise RuntimeError("Node number 3 (FULLY_CONNECTED) failed to invoke.")

    monkeypatch.setitem(formats.RUNTIMES, "litert", refuse)
    with pytest.raises(ExportError, match=r"^LiteRT export failed: the LiteRT runtime said: Node number 3 "
                                          r"\(FULLY_CONNECTED\) failed to invoke\. The model file is unchanged"):
        export_model(array_model(), "litert", tmp_path / "model.tflite", samples_for("array")[:5])
    assert list(tmp_path.iterdir()) == []


def test_missing_packages_are_named_with_the_install_command(monkeypatch, tmp_path):
    assert missing_packages("onnx") == [] and missing_packages("litert") == []  # the test command installs them
    real = formats.importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name: None if name in ("onnxruntime", "ai_edge_litert") else real(name))
    assert missing_packages("onnx") == ["onnxruntime"]
    assert missing_packages("litert") == ["ai-edge-litert"]
    assert missing_packages("saved_model") == []
    assert INSTALL_COMMAND == "pip install -r requirements-export.txt"
    with pytest.raises(MissingExportPackages, match=r"^ONNX export needs onnxruntime, not installed here: run "
                                                    r"`pip install -r requirements-export.txt`"):
        export_model(array_model(), "onnx", tmp_path / "model.onnx", samples_for("array"))


def test_requirements_export_pins_every_package_and_the_dev_requirements_include_it():
    pins = dict(line.split("==") for line in (ROOT / "requirements-export.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    assert sorted(pins) == sorted(pip for needs in formats.PACKAGES.values() for _, pip in needs)
    assert "-r requirements-export.txt" in (ROOT / "requirements-dev.txt").read_text().splitlines()


def test_bad_requests_say_what_was_wrong(tmp_path, monkeypatch):
    tmp_path = tmp_path / "out"  # beside the test's own STACKLAB_HOME
    tmp_path.mkdir()
    with pytest.raises(ValueError, match=r"Unknown export format 'tflite': expected one of saved_model, onnx, litert"):
        export_model(array_model(), "tflite", tmp_path / "m.tflite", samples_for("array"))
    source = tmp_path / "model.keras"
    array_model().save(source)
    with pytest.raises(ValueError, match="would overwrite its own model file"):
        export_model(source, "onnx", source, samples_for("array"))
    with pytest.raises(ValueError, match=r"lack the model's input column\(s\) 'color'"):
        export_model(dict_model(), "onnx", tmp_path / "m.onnx", {"age (years)": samples_for("dict")["age (years)"]})
    with pytest.raises(ValueError, match="takes one array input, not columns"):
        export_model(array_model(), "onnx", tmp_path / "m.onnx", {"features": samples_for("array")})
    with pytest.raises(ValueError, match="No samples to verify"):
        export_model(array_model(), "onnx", tmp_path / "m.onnx", np.zeros((0, 3), "float32"))
    monkeypatch.setattr("core.training.backend.backend_name", lambda: "jax")
    with pytest.raises(ExportError, match=r"LiteRT export needs the TensorFlow backend.*this process runs 'jax'"):
        export_model(array_model(), "litert", tmp_path / "m.tflite", samples_for("array"))
    assert list(tmp_path.iterdir()) == [source]


def test_the_export_modules_import_without_keras():
    """The CLI parser and missing_packages cost no Keras import (and so import on any backend)."""
    code = ("import sys, core.export.cli, core.export.formats as f; f.missing_packages('onnx'); "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the CLI ----------------------------------------------------------------------------------


def parse(argv, recorded):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"), record_artifact=lambda *a: recorded.append(a))
    return parser.parse_args(argv)


@pytest.fixture
def finished_run(stacklab_home, monkeypatch):
    folder = stacklab_home / "runs" / "run-1"
    folder.mkdir(parents=True)
    dict_model().save(folder / "model.keras")
    (folder / "spec.json").write_text("{}")
    asked = []
    monkeypatch.setattr(core.spec, "load_spec", lambda path: asked.append(Path(path)) or "the spec")
    monkeypatch.setattr(core.data, "validation_inputs", lambda spec, limit: (samples_for("dict"), None)
                        if (spec, limit) == ("the spec", 100) else None, raising=False)
    return folder, asked


def test_cli_exports_a_run_into_its_folder_and_records_the_artifact(finished_run, capsys):
    folder, asked = finished_run
    before = (folder / "model.keras").read_bytes()
    recorded = []
    args = parse(["export", "run-1", "--format", "litert"], recorded)
    assert args.run(args) == 0
    assert asked == [folder / "spec.json"]
    assert recorded == [("run-1", "model.tflite", folder / "model.tflite")]
    out = capsys.readouterr().out
    assert out.startswith("wrote LiteRT: model.tflite (") and "on 100 samples (limit 1e-04)" in out
    assert (folder / "model.keras").read_bytes() == before


def test_cli_out_elsewhere_is_not_a_run_artifact(finished_run, tmp_path):
    recorded = []
    args = parse(["export", "run-1", "--format", "onnx", "--out", str(tmp_path / "mine.onnx")], recorded)
    assert args.run(args) == 0
    assert (tmp_path / "mine.onnx").is_file() and recorded == []


def test_cli_says_why_in_one_line(stacklab_home, capsys):
    (stacklab_home / "runs" / "queued").mkdir(parents=True)
    for run_id, reason in [("nope", "No run 'nope'"), ("queued", "Run 'queued' has no model.keras yet"),
                           ("../x", "Invalid run id")]:
        args = parse(["export", run_id, "--format", "onnx"], [])
        assert args.run(args) == 1
        assert capsys.readouterr().err.startswith(f"error: {reason}")


def test_cli_json_answer_is_one_line(finished_run):
    """--json keeps stdout for the answer (the dashboard's child), so it runs in its own process."""
    folder, _ = finished_run
    code = ("import sys, json, numpy as np, core.data, core.spec; from core.export import cli; import argparse\n"
            "core.spec.load_spec = lambda path: None\n"
            "core.data.validation_inputs = lambda spec, limit: (np.ones((4, 3), 'float32'), None)\n"
            "p = argparse.ArgumentParser(); cli.add_parser(p.add_subparsers(dest='c'))\n"
            "a = p.parse_args(['export', 'run-2', '--format', 'saved_model', '--json']); sys.exit(a.run(a))\n")
    (folder.parent / "run-2").mkdir()
    array_model().save(folder.parent / "run-2" / "model.keras")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=dict(os.environ), capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout)
    assert answer["ok"] and answer["format"] == "saved_model" and answer["samples"] == 4
    assert answer["path"] == str(folder.parent / "run-2" / "saved_model.zip") and answer["max_abs_diff"] <= 1e-4
