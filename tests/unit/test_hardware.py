"""Precision and backend environment choices of the search process (no Keras needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.worker.hardware import Accelerator, backend_environment, choose_precision


def accelerator(backend: str, platform: str, bfloat16: bool) -> Accelerator:
    return Accelerator(
        backend=backend,
        platform=platform,
        strategy="SingleDevice",
        replicas=1,
        devices=(f"{platform}:0",),
        bfloat16=bfloat16,
    )


@pytest.mark.parametrize(
    ("backend", "platform", "bfloat16", "expected"),
    [
        ("tensorflow", "cpu", True, "mixed_bfloat16"),
        ("tensorflow", "cpu", False, "float32"),
        ("tensorflow", "gpu", True, "mixed_bfloat16"),
        ("tensorflow", "tpu", True, "mixed_bfloat16"),
        ("jax", "cpu", True, "float32"),
        ("jax", "gpu", True, "float32"),
        ("jax", "tpu", True, "mixed_bfloat16"),
    ],
)
def test_auto_precision(backend: str, platform: str, bfloat16: bool, expected: str) -> None:
    assert choose_precision("auto", accelerator(backend, platform, bfloat16)) == expected


def test_asked_precision_is_kept() -> None:
    cpu = accelerator("jax", "cpu", bfloat16=False)
    assert choose_precision("mixed_bfloat16", cpu) == "mixed_bfloat16"
    assert choose_precision("float32", accelerator("tensorflow", "tpu", True)) == "float32"


def test_jax_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    alone = backend_environment("jax", tmp_path / "cache", parallel_trials=1)
    assert alone == {
        "KERAS_BACKEND": "jax",
        "JAX_COMPILATION_CACHE_DIR": str((tmp_path / "cache" / "jax").resolve()),
    }
    shared = backend_environment("jax", tmp_path / "cache", parallel_trials=3)
    assert shared["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"

    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/operators/choice")
    assert (
        backend_environment("jax", tmp_path, parallel_trials=1)["JAX_COMPILATION_CACHE_DIR"]
        == "/operators/choice"
    )


def test_tensorflow_environment_sets_only_the_backend(tmp_path: Path) -> None:
    assert backend_environment("tensorflow", tmp_path, parallel_trials=4) == {
        "KERAS_BACKEND": "tensorflow"
    }
