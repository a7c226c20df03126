"""The arrays behind StackLab's built-in datasets: scikit-learn's bundled sets and two
generated ones. Everything is offline and deterministic; nothing here downloads.

Each maker returns raw `Arrays` (features as the data holds them, unscaled labels);
`core.data` wraps them into a `Dataset` and caches it; scaling tabular features is the
model's first layer (`core.build.preprocessing`), fitted on the training split.
scikit-learn is imported inside the makers, so importing this module stays cheap.

Example:
    >>> arrays = make_digits28()
    >>> arrays.x.shape, arrays.class_names[:3]
    ((1797, 28, 28, 1), ('0', '1', '2'))
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from core.data.dataset import Dataset
from core.spec.tasks import TaskInfo

# Fixed seeds: a generated dataset must be the same on every machine and every run,
# otherwise two runs of one spec would not train on the same data.
TRANSACTIONS_SEED = 20240611
WAVEFORMS_SEED = 20240612


class Arrays(NamedTuple):
    """One built-in dataset as arrays.

    kind: "multiclass", "binary" or "regression" (see core.spec.tasks.TaskInfo).
    feature_names: one name per column for tabular data, () for images and sequences.
    """

    x: np.ndarray
    y: np.ndarray
    kind: str
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values in load_digits are counts 0..16 (4x4 blocks of a 32x32 bitmap).
    return digits.images / 16.0, digits.target.astype(np.int64)


def make_digits28() -> Arrays:
    """load_digits upscaled to 28x28x1, so MNIST-style CNNs run on real handwriting."""
    images, labels = _digit_images()
    # Each pixel becomes a 3x3 block (8x8 -> 24x24), then a 2-pixel border like MNIST's.
    upscaled = np.kron(images, np.ones((1, 3, 3)))
    padded = np.pad(upscaled, ((0, 0), (2, 2), (2, 2)))
    x = padded[..., np.newaxis].astype(np.float32)
    return Arrays(x, labels, "multiclass", tuple(str(d) for d in range(10)))


def make_digits8() -> Arrays:
    """load_digits as 8x8x1 images in [0, 1]."""
    images, labels = _digit_images()
    x = images[..., np.newaxis].astype(np.float32)
    return Arrays(x, labels, "multiclass", tuple(str(d) for d in range(10)))


def _sklearn_table(loader_name: str, kind: str) -> Arrays:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)()
    x = np.asarray(bunch.data, dtype=np.float64)
    feature_names = tuple(str(name) for name in bunch.feature_names)
    if kind == "regression":
        return Arrays(x, bunch.target.astype(np.float32), kind, (), feature_names)
    class_names = tuple(str(name) for name in bunch.target_names)
    return Arrays(x, bunch.target.astype(np.int64), kind, class_names, feature_names)


def make_iris() -> Arrays:
    return _sklearn_table("load_iris", "multiclass")


def make_wine() -> Arrays:
    return _sklearn_table("load_wine", "multiclass")


def make_breast_cancer() -> Arrays:
    return _sklearn_table("load_breast_cancer", "binary")


def make_diabetes() -> Arrays:
    return _sklearn_table("load_diabetes", "regression")


TRANSACTION_FEATURES = (
    "amount", "hour", "merchant_risk", "distance_from_home_km", "distance_from_last_km",
    "amount_to_median_ratio", "transactions_24h", "account_age_days", "online",
    "card_present", "foreign", "new_device", "failed_attempts_24h",
)


def make_transactions(num_samples: int = 10_000, fraud_rate: float = 0.025,
                      seed: int = TRANSACTIONS_SEED) -> Arrays:
    """Generated card transactions, about 2.5% of them fraud.

    Features are drawn like a card's everyday life (spend around the customer's median,
    daytime hours, mostly nearby merchants); a hidden risk score mixes them, partly
    non-linearly (night-time online purchases, new devices abroad), plus noise, and the
    riskiest `fraud_rate` of transactions are fraud. So no single column gives it away,
    a linear model does well and a small network a little better.
    """
    rng = np.random.default_rng(seed)
    n = num_samples
    account_age_days = np.round(rng.gamma(2.0, 400.0, n))
    customer_median = rng.lognormal(3.3, 0.6, n)
    amount = np.round(customer_median * rng.lognormal(0.0, 0.7, n), 2)
    ratio = amount / customer_median
    hour = np.floor(rng.normal(14.0, 4.5, n) % 24)
    online = rng.random(n) < 0.4
    card_present = ~online & (rng.random(n) < 0.9)
    foreign = rng.random(n) < 0.06
    distance_home = rng.lognormal(2.0, 1.2, n) + foreign * rng.lognormal(6.0, 0.8, n)
    distance_last = rng.lognormal(1.5, 1.3, n)
    merchant_risk = rng.beta(2.0, 8.0, n)
    new_device = online & (rng.random(n) < 0.1)
    transactions_24h = rng.poisson(3.0, n)
    failed_attempts = rng.poisson(0.1, n)
    night = (hour < 6) | (hour >= 23)
    risk = (
        1.1 * np.log(ratio)
        + 3.0 * merchant_risk
        + 1.4 * (night & online)
        + 0.9 * new_device
        + 1.0 * (new_device & foreign)
        + 0.8 * foreign
        + 0.5 * np.log1p(distance_last)
        + 0.25 * transactions_24h
        + 0.7 * failed_attempts
        - 0.6 * (account_age_days > 400)
        - 0.6 * card_present
    )
    # Logistic noise makes the label a draw, not a function of the features: even a
    # perfect model cannot reach 100%, as with real fraud labels.
    noisy = 1.6 * risk + rng.logistic(0.0, 1.0, n)
    y = (noisy > np.quantile(noisy, 1.0 - fraud_rate)).astype(np.int64)
    x = np.column_stack([
        amount, hour, merchant_risk, distance_home, distance_last, ratio, transactions_24h,
        account_age_days, online, card_present, foreign, new_device, failed_attempts,
    ]).astype(np.float64)
    return Arrays(x, y, "binary", ("normal", "fraud"), TRANSACTION_FEATURES)


WAVEFORM_CLASSES = ("sine", "square", "sawtooth", "noise")


def make_waveforms(num_samples: int = 4_000, steps: int = 64,
                   seed: int = WAVEFORMS_SEED) -> Arrays:
    """Generated sequences of shape (steps, 1): sine, square, sawtooth or smoothed noise.

    Every sample has a random frequency (1 to 4 cycles), phase, amplitude and offset plus
    Gaussian noise, and the noise class is smoothed to a similar amplitude, so the class
    shows in the shape of the wave rather than in its scale.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % len(WAVEFORM_CLASSES)
    rng.shuffle(labels)
    t = np.linspace(0.0, 1.0, steps, endpoint=False)[np.newaxis, :]
    cycles = rng.uniform(1.0, 4.0, (num_samples, 1))
    phase = rng.uniform(0.0, 1.0, (num_samples, 1))
    amplitude = rng.uniform(0.5, 1.5, (num_samples, 1))
    offset = rng.normal(0.0, 0.2, (num_samples, 1))
    position = (cycles * t + phase) % 1.0
    shapes = {
        "sine": np.sin(2 * np.pi * position),
        "square": np.where(position < 0.5, 1.0, -1.0),
        "sawtooth": 2.0 * position - 1.0,
    }
    # A moving average of white noise: wanders like a signal but has no period.
    kernel = np.ones(6) / np.sqrt(6)
    white = rng.normal(0.0, 1.0, (num_samples, steps + kernel.size - 1))
    shapes["noise"] = np.stack([np.convolve(row, kernel, mode="valid") for row in white])
    waves = np.zeros((num_samples, steps))
    for label, name in enumerate(WAVEFORM_CLASSES):
        waves[labels == label] = shapes[name][labels == label]
    x = amplitude * waves + offset + rng.normal(0.0, 0.25, (num_samples, steps))
    return Arrays(x[..., np.newaxis].astype(np.float32), labels.astype(np.int64),
                  "multiclass", WAVEFORM_CLASSES)


@dataclass(frozen=True)
class BuiltinDataset:
    """A built-in dataset in the registry: what it is called and how to make its arrays."""

    name: str
    title: str
    description: str
    loader: Callable[[], Arrays]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry for entry in (
        BuiltinDataset("digits28", "Handwritten digits, 28x28",
                       "scikit-learn's 1,797 handwritten digits upscaled to 28x28x1 in [0, 1], "
                       "so MNIST-style CNNs run on real handwriting offline.",
                       make_digits28),
        BuiltinDataset("digits8", "Handwritten digits, 8x8",
                       "scikit-learn's 1,797 handwritten digits as 8x8x1 images in [0, 1].",
                       make_digits8),
        BuiltinDataset("iris", "Iris flowers",
                       "150 flowers, 4 measurements, 3 species.", make_iris),
        BuiltinDataset("wine", "Wine cultivars",
                       "178 wines, 13 chemical measurements, 3 cultivars.",
                       make_wine),
        BuiltinDataset("breast_cancer", "Breast cancer (binary)",
                       "569 tumours, 30 cell-nucleus features, malignant or benign.",
                       make_breast_cancer),
        BuiltinDataset("diabetes", "Diabetes progression (regression)",
                       "442 patients, 10 baseline features, disease progression after one "
                       "year (a number from 25 to 346).", make_diabetes),
        BuiltinDataset("transactions", "Card transactions: fraud detection",
                       "10,000 generated card transactions, 13 features (amount, hour, "
                       "merchant risk, distances, device...), 2.5% fraud. Imbalanced: "
                       "watch AUC, precision and recall, not only accuracy.",
                       make_transactions),
        BuiltinDataset("waveforms", "Waveforms: sequence classification",
                       "4,000 generated noisy sequences of 64 steps (shape (64, 1)): sine, "
                       "square, sawtooth or smoothed noise, with random frequency and phase. "
                       "For Conv1D, GRU and LSTM members.", make_waveforms),
    )
}


def list_builtins() -> list[dict[str, Any]]:
    """Describe every built-in dataset as plain data, for pickers and the CLI.

    Returns:
        One dict per dataset: name, title, description, input_shape, task (kind),
        num_samples, num_classes, class_names.

    Example:
        >>> [d["name"] for d in list_builtins()][:2]
        ['digits28', 'digits8']
    """
    out = []
    for entry in BUILTIN_DATASETS.values():
        dataset = load_builtin(entry.name)
        out.append({
            "name": entry.name, "title": entry.title, "description": entry.description,
            "input_shape": list(dataset.task.input_shape), "task": dataset.task.kind,
            "num_samples": dataset.num_samples, "num_classes": dataset.task.num_classes,
            "class_names": list(dataset.task.class_names),
        })
    return out


@functools.lru_cache(maxsize=None)
def load_builtin(name: str) -> Dataset:
    """The built-in dataset `name` with its raw features, made once per process and read-only."""
    arrays = BUILTIN_DATASETS[name].loader()
    x, y = arrays.x, arrays.y
    if arrays.kind == "regression":
        task = TaskInfo("regression", tuple(x.shape[1:]), output_dim=1 if y.ndim == 1 else y.shape[1])
    else:
        task = TaskInfo(arrays.kind, tuple(x.shape[1:]), num_classes=len(arrays.class_names),
                        class_names=arrays.class_names)
    dataset = Dataset(name, x, y, task, arrays.feature_names, BUILTIN_DATASETS[name].description)
    # The cache hands the same arrays to every caller: make writes fail loudly.
    dataset.x.flags.writeable = False
    dataset.y.flags.writeable = False
    return dataset
