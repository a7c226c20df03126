"""Benchmark: what training through the run engine costs, against plain `model.fit`.

Trains the same spec (the seed's sequential CNN on 10,000 28x28 digits, batch 64)
(a) with plain `model.fit` in a fresh process and (b) through `core.runs.start` and a
worker process, alternating a/b for `--pairs` pairs (ab, ba, ab, ...), and prints:

- the median epoch-time ratio b/a (target <= 1.03). Epoch time is the wall time between
  consecutive epoch ends, so everything done per epoch counts (events, SQLite rows,
  member update sizes, checkpoints, TensorBoard); the first epoch (tracing) is skipped;
- epoch end -> row visible in the store, seen by a reader polling every 5 ms (p95,
  target <= 250 ms);
- the RSS of this (calling) process over `--runs` consecutive short runs (growth target
  <= 5 %): the dashboard server is such a caller.

With `--step-samples`, it measures instead what sampling the loss once a second costs the
batch callback: alternating plain fits with the run's event callback, sampling off / on
(median epoch-time ratio of the pairs), and the callback's own time per batch.

Ratios are measured within one invocation, on the same machine, because absolute times on
a shared machine are noise. Run from the repo root:

    .venv/bin/python bench/run_overhead.py [--pairs 7] [--epochs 8] [--runs 20] [--step-samples]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402

PLAIN_FIT = r"""
import json, sys, time
import keras
from core.build.preprocessing import prepare
from core.spec import StackSpec
from core.build.stacking import build
from core.training import callbacks
from core.training.loop import compile_model

spec = StackSpec.from_json(open(sys.argv[1]).read())
data = prepare(spec.dataset, spec.train)  # the encoded split a run trains on
parts = data.split
keras.utils.set_random_seed(spec.train.seed)
model = build(spec, data.task)
compile_model(model, spec.train, data.task)
ends = []

class EpochEnds(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        ends.append(time.perf_counter())

extra, hook = [], [0, 0.0]
if len(sys.argv) > 2:  # "samples" / "no-samples": the run's event callback, sampling the loss or not
    if sys.argv[2] == "no-samples":
        callbacks.STEP_SAMPLE_INTERVAL_S = float("inf")
    steps = -(-len(parts.x_train) // spec.train.batch_size)
    events = callbacks.EventCallback(lambda event: None, lambda: False, [m.name for m in spec.all_members()],
                                     "train", steps, [])
    batch_end = events.on_train_batch_end

    def timed(batch, logs=None):
        start = time.perf_counter()
        batch_end(batch, logs)
        hook[0] += 1
        hook[1] += time.perf_counter() - start

    events.on_train_batch_end = timed
    extra.append(events)
model.fit(parts.x_train, parts.y_train, batch_size=spec.train.batch_size, epochs=spec.train.epochs,
          validation_data=(parts.x_val, parts.y_val), shuffle=True, verbose=0, callbacks=[EpochEnds(), *extra])
print(json.dumps({"ends": ends, "hook_calls": hook[0], "hook_s": hook[1]}))
"""


def make_digits_10k(folder: Path) -> Path:
    """10,000 digits: the built-in 1,797 shifted by up to 2 pixels, as an NPZ upload would be."""
    from core.data import load_dataset

    digits = load_dataset(DatasetSpec(name="digits28"))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, digits.num_samples, 10_000)
    shifts = rng.integers(-2, 3, size=(10_000, 2))
    x = np.stack([np.roll(digits.x[i], tuple(s), axis=(0, 1)) for i, s in zip(picks, shifts)])
    path = folder / "digits10k.npz"
    np.savez(path, x=x.astype("float32"), y=digits.y[picks])
    return path


def bench_spec(data: Path, epochs: int) -> StackSpec:
    return StackSpec(
        name="bench",
        members=(MemberSpec("features", template="cnn_features", params={"filters": [32]}),
                 MemberSpec("classifier", template="dense_head", params={"hidden_units": [128]})),
        train=TrainSpec(epochs=epochs, batch_size=64, validation_split=0.2),
        dataset=DatasetSpec(source="npz", path=str(data), scaling="none"),
    )


def epoch_times(ends: list[float]) -> tuple[float, float]:
    """(median, minimum) of the gaps between epoch ends; the first epoch (tracing) is skipped.

    The minimum is the least disturbed epoch: on a shared, noisy machine it estimates
    the cost of the training itself better than the median does.
    """
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return statistics.median(gaps), min(gaps)


def _plain_fit_run(spec_path: Path, *mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(spec_path), *mode], capture_output=True, text=True,
                            env=env, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def plain_fit(spec_path: Path) -> tuple[float, float]:
    return epoch_times(_plain_fit_run(spec_path)["ends"])


def step_sample_cost(spec_path: Path, pairs: int) -> None:
    """Plain fits with the event callback, step samples off / on, alternating: what sampling costs."""
    ratios, min_ratios, per_batch = [], [], {"no-samples": [], "samples": []}
    for pair in range(pairs):
        times = {}
        # ABBA: which runs first alternates, so a load that rises or falls over the minutes
        # of the bench does not favour one side.
        for mode in ("no-samples", "samples")[::1 if pair % 2 == 0 else -1]:
            result = _plain_fit_run(spec_path, mode)
            times[mode] = epoch_times(result["ends"])
            per_batch[mode].append(result["hook_s"] / max(result["hook_calls"], 1))
        (off, off_min), (on, on_min) = times["no-samples"], times["samples"]
        ratios.append(on / off)
        min_ratios.append(on_min / off_min)
        print(f"pair {pair + 1}: event callback without samples {off:.3f} s/epoch (min {off_min:.3f}), with "
              f"samples {on:.3f} s/epoch (min {on_min:.3f}), ratio {on / off:.3f} (of minima "
              f"{on_min / off_min:.3f})", flush=True)
    print(f"\nmedian epoch-time ratio with / without step samples: {statistics.median(ratios):.3f} "
          f"(pairs {min(ratios):.2f}-{max(ratios):.2f}); of the fastest epochs {statistics.median(min_ratios):.3f}")
    print("batch callback time per batch (median over runs): "
          + ", ".join(f"{mode} {statistics.median(values) * 1e6:.1f} us" for mode, values in per_batch.items()))


def through_runs(spec: StackSpec, latencies: list[float]) -> tuple[float, float]:
    """One run through the job manager; records epoch end -> row visible latencies.

    The reader polls with one small query every 5 ms (what it costs the worker is part of
    the measurement, so it is kept cheap), and reads the run's status every 0.5 s.
    """
    from core import runs

    run_id = runs.start(spec)
    store = runs.current_store()
    last_epoch, next_status = 0, 0.0
    while True:
        rows = store.execute("SELECT epoch, ended_at FROM epochs WHERE run_id = ? AND epoch > ?",
                             (run_id, last_epoch)).fetchall()
        now = time.time()
        for epoch, ended_at in rows:
            latencies.append(now - ended_at)
            last_epoch = max(last_epoch, epoch)
        if now >= next_status:
            run = runs.get(run_id)
            if not run.is_active:
                break
            next_status = now + 0.5
        time.sleep(0.005)
    if run.status != "finished":
        raise SystemExit(f"run {run_id} {run.status}: {run.error}")
    return epoch_times([row["ended_at"] for row in runs.metrics(run_id)])


def rss_over_runs(count: int) -> list[int]:
    from core import runs

    spec = StackSpec(
        name="rss", members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                             MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=2, batch_size=16), dataset=DatasetSpec(name="iris"))
    process = psutil.Process()
    samples = []
    for _ in range(count):
        run_id = runs.start(spec)
        while runs.get(run_id).is_active:
            runs.metrics(run_id)  # read like the dashboard does while it polls
            runs.progress(run_id)
            time.sleep(0.05)
        samples.append(process.memory_info().rss)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--step-samples", action="store_true",
                        help="measure the batch callback's cost of sampling the loss once a second instead")
    args = parser.parse_args()
    if args.pairs < 7:
        print(f"note: {args.pairs} pairs; the target is judged on the median of >= 7", flush=True)
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        os.environ["STACKLAB_HOME"] = str(Path(tmp) / "home")
        spec = bench_spec(make_digits_10k(Path(tmp)), args.epochs)
        spec_path = Path(tmp) / "spec.json"
        spec_path.write_text(spec.to_json())
        if args.step_samples:
            step_sample_cost(spec_path, args.pairs)
            return
        ratios, min_ratios, latencies = [], [], []
        for pair in range(args.pairs):
            # ABBA: which runs first alternates, so a load that rises or falls over the
            # minutes of the bench does not favour one side.
            if pair % 2 == 0:
                plain, plain_min = plain_fit(spec_path)
                engine, engine_min = through_runs(spec, latencies)
            else:
                engine, engine_min = through_runs(spec, latencies)
                plain, plain_min = plain_fit(spec_path)
            ratios.append(engine / plain)
            min_ratios.append(engine_min / plain_min)
            print(f"pair {pair + 1}: plain fit {plain:.3f} s/epoch (min {plain_min:.3f}), run engine "
                  f"{engine:.3f} s/epoch (min {engine_min:.3f}), ratio {engine / plain:.3f} "
                  f"(of minima {engine_min / plain_min:.3f})", flush=True)
        rss = rss_over_runs(args.runs)
    p95 = float(np.percentile(latencies, 95)) * 1000
    growth = (rss[-1] - rss[0]) / rss[0] * 100
    print(f"\nmedian epoch-time ratio run engine / plain fit: {statistics.median(ratios):.3f} "
          f"(pairs {min(ratios):.2f}-{max(ratios):.2f}; target <= 1.03)")
    print(f"median ratio of the fastest epochs: {statistics.median(min_ratios):.3f} "
          f"(pairs {min(min_ratios):.2f}-{max(min_ratios):.2f})")
    print(f"epoch end -> row visible: p95 {p95:.0f} ms, max {max(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} epochs (target p95 <= 250 ms)")
    print(f"caller RSS over {args.runs} runs: {rss[0] / 2**20:.1f} MiB -> {rss[-1] / 2**20:.1f} MiB "
          f"({growth:+.1f} %, target <= 5 %)")


if __name__ == "__main__":
    main()
