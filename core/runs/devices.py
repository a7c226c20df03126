"""The machine's GPUs, as the scheduler hands them to workers. No Keras import.

The list comes from `STACKLAB_GPUS` when it is set (a fake list for tests, or a way to
give StackLab only some GPUs: "0,1"; "" for none), else from `nvidia-smi` (absent or
failing: no GPUs), restricted to the GPUs `CUDA_VISIBLE_DEVICES` names when that is set.
Indices are nvidia-smi's (PCI bus order): the scheduler sets a worker's
`CUDA_VISIBLE_DEVICES` to them, with `CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA numbers the
same way.

Example:
    >>> os.environ["STACKLAB_GPUS"] = "0,1"
    >>> [gpu.index for gpu in machine_gpus()]
    [0, 1]
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass

GPUS_VARIABLE = "STACKLAB_GPUS"
# A worker runs with CUDA_VISIBLE_DEVICES narrowed to its own GPUs (or "" for a CPU run), and
# its supervisor schedules the next queued run when it ends: it must see the machine's GPUs,
# not its own. The scheduler passes the machine's visibility down in this variable ("*": the
# variable was unset, every GPU).
MACHINE_VISIBLE_VARIABLE = "STACKLAB_MACHINE_CUDA_VISIBLE_DEVICES"
ALL_VISIBLE = "*"


def machine_visibility() -> str | None:
    """CUDA_VISIBLE_DEVICES as the machine's StackLab started with it (None: unset), also in a worker."""
    passed = os.environ.get(MACHINE_VISIBLE_VARIABLE)
    if passed is not None:
        return None if passed == ALL_VISIBLE else passed
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def machine_visibility_env() -> dict[str, str]:
    """What a worker's environment carries so that `machine_visibility` there answers as here."""
    visible = machine_visibility()
    return {MACHINE_VISIBLE_VARIABLE: ALL_VISIBLE if visible is None else visible}


NVIDIA_SMI = ("nvidia-smi", "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits")
NVIDIA_SMI_TIMEOUT_S = 10.0
# The dashboard asks on every rerun; nvidia-smi takes tens of milliseconds or more, and the
# GPUs of a machine do not change from one second to the next.
CACHE_S = 5.0


@dataclass(frozen=True)
class GpuInfo:
    """One GPU: its index (nvidia-smi's, what CUDA_VISIBLE_DEVICES takes), name and memory."""

    index: int
    name: str
    memory_mb: int | None
    uuid: str | None = None  # "GPU-..." (CUDA_VISIBLE_DEVICES may name a GPU by it)

    def describe(self) -> str:
        """'GPU 0: NVIDIA H200 (143,771 MiB)'."""
        memory = f" ({self.memory_mb:,} MiB)" if self.memory_mb is not None else ""
        return f"GPU {self.index}: {self.name}{memory}"


_cache: dict[tuple[str | None, str | None], tuple[float, tuple[GpuInfo, ...]]] = {}
_cache_lock = threading.Lock()


def machine_gpus() -> tuple[GpuInfo, ...]:
    """The GPUs StackLab may give to runs, in the order runs get them.

    Cached for a few seconds per process (per value of STACKLAB_GPUS and CUDA_VISIBLE_DEVICES).

    Returns:
        `STACKLAB_GPUS`'s list if the variable is set (no nvidia-smi call; each named "listed in STACKLAB_GPUS"),
        else nvidia-smi's GPUs restricted to `CUDA_VISIBLE_DEVICES` when it is set; () on a
        machine without NVIDIA GPUs or without a working nvidia-smi.

    Raises:
        ValueError: STACKLAB_GPUS is set but is not a comma-separated list of distinct GPU
            indices.
    """
    key = (os.environ.get(GPUS_VARIABLE), machine_visibility())
    now = time.monotonic()
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
    if key[0] is not None:
        gpus = tuple(GpuInfo(index, f"listed in {GPUS_VARIABLE}", None) for index in parse_gpu_list(key[0]))
    else:
        gpus = _nvidia_smi_gpus()
        if key[1] is not None:
            gpus = restrict_to_visible(gpus, key[1])
    with _cache_lock:
        _cache[key] = (now, gpus)
    return gpus


def gpu_source() -> str:
    """Where `machine_gpus()` takes its list from, in words (for `python -m core devices`)."""
    if os.environ.get(GPUS_VARIABLE) is not None:
        return f"{GPUS_VARIABLE}={os.environ[GPUS_VARIABLE]!r}"
    visible = machine_visibility()
    return "nvidia-smi" + (f", restricted to CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else "")


def parse_gpu_list(text: str) -> tuple[int, ...]:
    """'0,1,3' -> (0, 1, 3); '' -> ().

    Raises:
        ValueError: an entry is not a whole number from 0 on, or appears twice.
    """
    entries = [entry.strip() for entry in text.split(",")] if text.strip() else []
    indices: list[int] = []
    for entry in entries:
        if not entry.isdigit():
            raise ValueError(
                f"{GPUS_VARIABLE} must list GPU indices separated by commas (e.g. \"0,1\", or \"\" for "
                f"none), received {text!r}: {entry!r} is not an index. Fix or unset it "
                f"(unset, StackLab asks nvidia-smi).")
        if int(entry) in indices:
            raise ValueError(f"{GPUS_VARIABLE} names GPU {int(entry)} twice, received {text!r}. "
                             f"List each GPU once.")
        indices.append(int(entry))
    return tuple(indices)


def restrict_to_visible(gpus: tuple[GpuInfo, ...], visible: str) -> tuple[GpuInfo, ...]:
    """The GPUs of `gpus` that CUDA_VISIBLE_DEVICES=`visible` lets a process see, in its order.

    Entries are indices or UUIDs (or UUID prefixes). As CUDA does, the list ends at the first
    entry that names no GPU ("-1" hides every GPU).
    """
    by_index = {gpu.index: gpu for gpu in gpus}
    chosen: list[GpuInfo] = []
    for entry in (part.strip() for part in visible.split(",")):
        if entry.isdigit():
            gpu = by_index.get(int(entry))
        else:
            matches = [g for g in gpus if entry and g.uuid and g.uuid.startswith(entry)]
            gpu = matches[0] if len(matches) == 1 else None
        if gpu is None:
            break
        if gpu not in chosen:
            chosen.append(gpu)
    return tuple(chosen)


def _nvidia_smi_gpus() -> tuple[GpuInfo, ...]:
    try:
        result = subprocess.run(NVIDIA_SMI, capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):  # not installed, not runnable, hung driver
        return ()
    if result.returncode != 0:  # installed without a driver or a GPU: "No devices were found"
        return ()
    return parse_nvidia_smi(result.stdout)


def parse_nvidia_smi(text: str) -> tuple[GpuInfo, ...]:
    """nvidia-smi's CSV lines ('0, NVIDIA H200, 143771, GPU-...') as GpuInfo; lines it cannot read are skipped."""
    gpus = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        memory = fields[2]
        uuid = fields[3] if len(fields) > 3 and fields[3].startswith("GPU-") else None
        gpus.append(GpuInfo(int(fields[0]), fields[1], int(memory) if memory.isdigit() else None, uuid))
    return tuple(gpus)


def clear_cache() -> None:
    """Forget the cached list (tests, or after a GPU was added)."""
    with _cache_lock:
        _cache.clear()
