"""One place for configuration: every process reads the same ``NAS_*`` variables."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: How the list settings are written in one variable (``NoDecode``: not as JSON).
LIST_SEPARATORS = {"data_roots": os.pathsep, "data_buckets": ","}


class Settings(BaseSettings):
    """Settings shared by the API, the workers and the CLI."""

    model_config = SettingsConfigDict(env_prefix="NAS_", extra="ignore")

    database_url: str = Field(
        default="sqlite:///var/nas.db",
        description="SQLAlchemy URL; a SQLite file by default, postgresql+psycopg://... to share.",
    )
    artifacts_dir: Path = Path("var/artifacts")
    cache_dir: Path = Path("var/cache")
    data_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("data")],
        description="Folders (separated by the OS path separator) that datasets must lie in.",
    )
    data_buckets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Cloud Storage buckets (comma-separated names) whose gs:// TFRecord globs "
        "searches may read; empty refuses every gs:// dataset.",
    )
    submit_scan_entries: int = Field(
        default=5000,
        ge=1,
        description="Most folder entries a submit lists to check a dataset; past them the "
        "API accepts it and the worker that prepares the search's data, which checks every "
        "file, refuses it if need be. Bounds the time a submit holds one of the API's threads.",
    )
    tf_flowers_url: str = Field(
        default="https://storage.googleapis.com/download.tensorflow.org/example_images/"
        "flower_photos.tgz",
        description="Where a worker downloads the tf_flowers archive from (once per cache).",
    )
    download_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Socket timeout of dataset downloads."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    api_threads: int = Field(
        default=2,
        ge=1,
        le=64,
        description="Threads that run the API's routes and their database work. Its reads "
        "hold the GIL; past about one per core the threads only fight over it (see README, "
        "Performance). Raise it for PostgreSQL on a larger host.",
    )
    api_answer_cache_bytes: int = Field(
        default=64 * 2**20,
        ge=0,
        description="Bytes of rendered search, leaderboard and CSV answers the API keeps under "
        "their ETags, so that many callers polling one search cost one rendering per change.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a connection has to send a request's line and headers (from "
        "when it opens, or from its last response) before `nas serve` closes it.",
    )
    max_connections: int = Field(
        default=256,
        ge=1,
        description="Open connections past which `nas serve` answers requests with 503 "
        "(uvicorn's limit_concurrency: it still accepts the connection, then refuses the "
        "request once its headers are in).",
    )
    poll_interval_seconds: float = Field(default=1.0, gt=0, description="Idle queue polling.")
    heartbeat_seconds: float = Field(default=10.0, gt=0, description="Lease renewal period.")
    lease_seconds: float = Field(default=60.0, gt=0, description="Lease lifetime unrenewed.")
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="Leases a trial may lose in a row without a new epoch before it fails (and a "
        "search's finishing step before the search fails).",
    )
    cancel_grace_seconds: float = Field(
        default=5.0, ge=0, description="Time a cancelled search gets to stop at an epoch end."
    )
    search_niceness: int = Field(
        default=10,
        ge=0,
        le=19,
        description="Scheduling niceness of slot and finishing processes, so the API and "
        "heartbeats stay responsive on a host whose CPUs train.",
    )
    store_retry_seconds: float = Field(
        default=300.0, ge=0, description="How long workers ride out a database outage."
    )
    backend: str = Field(
        default_factory=lambda: os.environ.get("KERAS_BACKEND", "tensorflow"),
        description="Keras backend the worker trains with: tensorflow or jax.",
    )
    parallel_trials: int = Field(
        default=1,
        ge=1,
        le=64,
        description="The worker's slots: trials it trains at once (of one search or several), "
        "each in its own process: while one trial compiles, others train on the same device.",
    )
    full_batches: bool = Field(
        default=True,
        description="Train on full batches only (the last one topped up with images of the "
        "training set) and validate in one batch where it fits: each trial then compiles one "
        "training step and one evaluation step instead of two of each.",
    )

    # Limits on what one token may ask of the service (see README, "Security").
    limit_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body accepted (413 past it)."
    )
    limit_max_trials: int = Field(
        default=100, ge=1, description="Most trials one search may plan (hyperband included)."
    )
    limit_epochs: int = Field(default=100, ge=1, description="Most epochs per trial.")
    limit_image_size: int = Field(default=384, ge=16, description="Largest image side, px.")
    limit_batch_size: int = Field(default=512, ge=1, description="Largest batch size.")
    limit_classes: int = Field(
        default=1000,
        ge=2,
        description="Most classes a dataset may have: TFRecord class indices must lie in "
        "0..limit-1, and class_names may name at most this many.",
    )
    limit_image_pixels: int = Field(
        default=40_000_000,
        ge=1,
        description="Most pixels one image may have (width x height); larger ones are "
        "skipped like unreadable ones, before they are decoded.",
    )
    limit_max_params: int = Field(
        default=50_000_000,
        ge=1,
        description="Most parameters a trial's model may have: a trial over it fails before "
        "its weights are allocated and the search goes on; a space whose smallest model is "
        "over it is refused at submit.",
    )
    limit_max_flops: int = Field(
        default=20_000_000_000,
        ge=1,
        description="Most forward FLOPs per image a trial's model may take (estimated from "
        "its hyperparameters): a trial over it fails before its weights are allocated. "
        "Without widths set in the request, a search's own caps on parameters and FLOPs "
        "also scale with its data (recorded as dataset.model_bounds).",
    )
    limit_queued_per_owner: int = Field(
        default=10, ge=1, description="Queued searches one owner may have (429 past it)."
    )
    rate_limit_per_minute: float = Field(
        default=600.0, gt=0, description="Requests per minute one token may make, on average."
    )
    rate_limit_burst: int = Field(
        default=120, ge=1, description="Requests one token may make at once before throttling."
    )
    auth_failures_per_minute: float = Field(
        default=30.0,
        gt=0,
        description="Refused tokens (missing, unknown, revoked) one client address may send "
        "a minute, on average, before its requests are refused unlooked-up (429); tokens "
        "already accepted from it still go through.",
    )
    auth_failures_burst: int = Field(
        default=30, ge=1, description="Refused tokens one client address may send at once."
    )

    @field_validator("data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(LIST_SEPARATORS["data_roots"]) if part]
        return value

    @field_validator("data_buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.split(LIST_SEPARATORS["data_buckets"])
            return [part.strip() for part in parts if part.strip()]
        return value

    def as_env(self) -> dict[str, str]:
        """Every setting as the ``NAS_*`` variable that gives it back, as a process reads it."""
        prefix = self.model_config.get("env_prefix", "")
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if name in LIST_SEPARATORS:
                text = LIST_SEPARATORS[name].join(value)
            else:
                text = value if isinstance(value, str) else json.dumps(value)
            env[f"{prefix}{name}".upper()] = text
        return env

    def resolved_data_roots(self) -> list[Path]:
        """The data roots as absolute paths with symlinks resolved."""
        return [root.expanduser().resolve() for root in self.data_roots]


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
