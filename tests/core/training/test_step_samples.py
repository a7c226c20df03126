"""Step samples of the training loss from the event callback: how often, which value, and that
the loss is read only when a sample or progress is due (never every batch)."""

import types

import pytest

from core.spec.events import EventLog
from core.training import callbacks
from core.training.callbacks import EventCallback
from core.training.loop import train
from tests.core.training.test_loop import tiny_dataset, tiny_spec


class FakeClock:
    """`time` as the callback sees it: each batch takes `step_s` seconds."""

    def __init__(self, step_s: float):
        self.now, self.step_s = 100.0, step_s

    def perf_counter(self) -> float:
        return self.now

    def time(self) -> float:
        return 5000.0 + self.now

    def tick(self) -> None:
        self.now += self.step_s


class CountingLogs(dict):
    """Batch logs that count how often the loss is read (a device sync on some backends)."""

    def __init__(self, loss: float):
        super().__init__(loss=loss)
        self.reads = 0

    def get(self, key, default=None):
        self.reads += key == "loss"
        return super().get(key, default)

    def __getitem__(self, key):
        self.reads += key == "loss"
        return super().__getitem__(key)


def run_batches(clock: FakeClock, batches: int, steps: int = 50):
    log = EventLog()
    events = EventCallback(log, should_stop=lambda: False, members=[], phase="train", steps=steps, history=[])
    events.set_model(types.SimpleNamespace(stop_training=False))
    events._last_sample = clock.perf_counter()  # what on_train_begin does
    events._epoch, events._epoch_start = 1, clock.perf_counter()
    logs = []
    for batch in range(batches):
        clock.tick()
        logs.append(CountingLogs(loss=1.0 / (batch + 1)))
        events.on_train_batch_end(batch % steps, logs[-1])
    return log, sum(entry.reads for entry in logs)


def test_the_loss_is_sampled_once_a_second_and_read_only_when_due(monkeypatch):
    clock = FakeClock(step_s=0.125)  # exact in binary: no rounding at the second's edges
    monkeypatch.setattr(callbacks, "time", clock)
    log, reads = run_batches(clock, batches=80)
    samples = log.of_kind("step")
    assert len(samples) == 10  # 10 s of batches
    times = [s.recorded_at for s in samples]
    assert all(b - a == 1.0 for a, b in zip(times, times[1:]))
    assert [(s.epoch, s.step, s.steps) for s in samples[:2]] == [(1, 8, 50), (1, 16, 50)]
    assert samples[0].loss == 1.0 / 8  # the value Keras reported at that batch
    # Read once at each batch where progress (every 0.25 s: even batches) or a sample (odd
    # ones here) is due, not per batch.
    assert len(log.of_kind("progress")) == 40
    assert reads == 40 + 10 < 80


def test_fast_batches_read_the_loss_a_handful_of_times(monkeypatch):
    clock = FakeClock(step_s=2 ** -10)
    monkeypatch.setattr(callbacks, "time", clock)
    log, reads = run_batches(clock, batches=2048)  # 2 s of ~1 ms batches
    assert len(log.of_kind("step")) == 2
    assert reads <= 10


def test_a_real_fit_samples_every_batch_of_every_epoch_when_asked(monkeypatch):
    monkeypatch.setattr(callbacks, "STEP_SAMPLE_INTERVAL_S", 0.0)
    log = EventLog()
    result = train(tiny_spec(epochs=2, batch_size=16), tiny_dataset(), log)
    samples = log.of_kind("step")
    steps = log.of_kind("started")[0].steps_per_epoch
    assert [(s.epoch, s.step) for s in samples] == [(e, b) for e in (1, 2) for b in range(1, steps + 1)]
    # The last batch's running mean is the epoch's training loss.
    for row in result.history:
        last = [s for s in samples if s.epoch == row["epoch"]][-1]
        assert last.loss == pytest.approx(row["loss"], rel=1e-5)



def test_member_updates_from_one_snapshot_an_epoch_match_the_weights_before_and_after():
    import keras
    import numpy as np

    from core.build.trainability import learnable_variables

    class MemberWeights(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_epoch_begin(self, epoch, logs=None):
            self.seen.append(self._copy())

        def on_epoch_end(self, epoch, logs=None):
            self.seen.append(self._copy())

        def _copy(self):
            return {name: [keras.ops.convert_to_numpy(v).astype("float64")
                           for v in learnable_variables(self.model.get_layer(name))]
                    for name in ("encoder", "head")}

    watcher = MemberWeights()
    log = EventLog()
    train(tiny_spec(epochs=3), tiny_dataset(), log, extra_callbacks=[watcher])
    for number, event in enumerate(log.of_kind("epoch")):
        before, after = watcher.seen[2 * number], watcher.seen[2 * number + 1]
        for name, value in event.member_updates.items():
            delta = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(after[name], before[name])))
            norm = np.sqrt(sum(np.sum(b ** 2) for b in before[name]))
            assert value == pytest.approx(delta / norm, rel=1e-4), (number, name)
