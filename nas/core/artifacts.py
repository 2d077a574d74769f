"""Where a search's files live under the artifacts directory.

The worker writes and the API serves through this one layout; the API never takes a path
from a request, only a search id (checked to be hex) and an integer rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SearchArtifacts:
    """Paths of one search's prepared data, tuner state and exported models."""

    root: Path
    search_id: str

    @property
    def search_dir(self) -> Path:
        return self.root / self.search_id

    @property
    def tuner_dir(self) -> Path:
        """KerasTuner's project directory (oracle state, checkpoints)."""
        return self.search_dir / "tuner"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard logs, one subfolder per trial: ``tensorboard --logdir`` on it."""
        return self.search_dir / "tensorboard"

    @property
    def data_dir(self) -> Path:
        """The search's prepared data: its photos decoded and split once, for every worker."""
        return self.search_dir / "data"

    def model(self, rank: int) -> ModelArtifacts:
        """The files of the model ranked ``rank`` (from 1)."""
        return ModelArtifacts(self.search_dir / "models" / f"rank-{rank:03d}")


@dataclass(frozen=True)
class ModelArtifacts:
    """The files of one exported model."""

    directory: Path

    @property
    def savedmodel_dir(self) -> Path:
        return self.directory / "savedmodel"

    @property
    def savedmodel_tarball(self) -> Path:
        return self.directory / "savedmodel.tar.gz"

    @property
    def keras_file(self) -> Path:
        return self.directory / "model.keras"

    @property
    def summary_file(self) -> Path:
        return self.directory / "summary.txt"

    @property
    def class_names_file(self) -> Path:
        return self.directory / "class_names.json"
