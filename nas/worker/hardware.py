"""Which devices a search trains on, under which distribution, at which precision.

Imported only inside a slot or finishing process, after ``KERAS_BACKEND`` is set; TensorFlow is
imported only for the TensorFlow backend.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@dataclass(frozen=True)
class Accelerator:
    """What the search actually ran on; recorded on the search."""

    backend: str
    platform: str
    strategy: str
    replicas: int
    devices: tuple[str, ...]
    bfloat16: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"devices": list(self.devices)}


@dataclass(frozen=True)
class Placement:
    """The accelerator and, on TensorFlow, the strategy KerasTuner builds models under."""

    accelerator: Accelerator
    tf_strategy: Any | None


def backend_environment(backend: str, cache_dir: Path, parallel_trials: int) -> dict[str, str]:
    """The environment variables a slot or finishing process sets before Keras is imported.

    On JAX: a persistent compilation cache under ``cache_dir`` (trials that repeat a model's
    shapes, later searches and, on GPUs, the autotuning results reuse what was compiled), and,
    with several trials in flight, memory allocated on demand rather than most of the device
    taken by the first process. Variables already set by the operator are kept.
    """
    tuning: dict[str, str] = {}
    if backend == "jax":
        tuning["JAX_COMPILATION_CACHE_DIR"] = str((cache_dir / "jax").resolve())
        if parallel_trials > 1:
            tuning["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    operators = {name: os.environ[name] for name in tuning if name in os.environ}
    return tuning | operators | {"KERAS_BACKEND": backend}


def select_placement(backend: str) -> Placement:
    """TPUStrategy on a TPU, MirroredStrategy on GPUs, the default strategy on CPU;
    on JAX, ``keras.distribution.DataParallel`` when several devices are visible."""
    if backend == "tensorflow":
        return _tensorflow_placement()
    if backend == "jax":
        return _jax_placement()
    raise ValueError(f"unsupported Keras backend {backend!r}: use tensorflow or jax")


def choose_precision(requested: str, accelerator: Accelerator) -> str:
    """The Keras dtype policy: ``auto`` picks bfloat16 where it pays, on TPUs and on TensorFlow
    where the hardware computes it.

    Not on JAX with CPUs or GPUs: XLA compiles a mixed bfloat16 step much more slowly (an H100
    took 37 s instead of 21 s for the codelab convnet's first epoch, to save 0.04 s on each
    later one), and short trials are mostly compilation; on CPUs it also trains half as fast.
    """
    if requested != "auto":
        return requested
    if accelerator.backend == "jax" and accelerator.platform != "tpu":
        return "float32"
    return "mixed_bfloat16" if accelerator.bfloat16 else "float32"


def cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has AMX or AVX512-BF16 instructions."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    return any(
        flag in BF16_CPU_FLAGS
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split()
    )


def _gpu_has_bfloat16(compute_capability: tuple[int, int] | None) -> bool:
    return compute_capability is not None and compute_capability >= (8, 0)


def _tensorflow_placement() -> Placement:
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver.connect()
    except (ValueError, RuntimeError, tf.errors.OpError):
        resolver = None
    if resolver is not None:
        strategy = tf.distribute.TPUStrategy(resolver)
        platform, bfloat16 = "tpu", True
    elif gpus := tf.config.list_physical_devices("GPU"):
        strategy = tf.distribute.MirroredStrategy()
        details = tf.config.experimental.get_device_details(gpus[0])
        platform, bfloat16 = "gpu", _gpu_has_bfloat16(details.get("compute_capability"))
    else:
        strategy = tf.distribute.get_strategy()
        platform, bfloat16 = "cpu", cpu_has_bfloat16()
    if platform == "cpu":
        # The default strategy cannot list its devices; it runs on the one CPU device.
        devices = tuple(device.name for device in tf.config.list_logical_devices("CPU")[:1])
    else:
        devices = tuple(strategy.extended.worker_devices)
    accelerator = Accelerator(
        backend="tensorflow",
        platform=platform,
        strategy=type(strategy).__name__,
        replicas=strategy.num_replicas_in_sync,
        devices=devices,
        bfloat16=bfloat16,
    )
    return Placement(accelerator=accelerator, tf_strategy=strategy)


def _jax_placement() -> Placement:
    import jax
    import keras

    devices = jax.devices()
    platform = devices[0].platform
    if len(devices) > 1:
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=keras.distribution.list_devices())
        )
        strategy = "DataParallel"
    else:
        strategy = "SingleDevice"
    if platform == "gpu":
        capability = getattr(devices[0], "compute_capability", None)
        bfloat16 = capability is not None and _gpu_has_bfloat16(
            tuple(int(part) for part in str(capability).split(".")[:2])  # type: ignore[arg-type]
        )
    else:
        bfloat16 = platform == "tpu" or cpu_has_bfloat16()
    accelerator = Accelerator(
        backend="jax",
        platform=platform,
        strategy=strategy,
        replicas=len(devices),
        devices=tuple(str(device) for device in devices),
        bfloat16=bfloat16,
    )
    return Placement(accelerator=accelerator, tf_strategy=None)
