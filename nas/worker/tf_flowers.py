"""``name: "tf_flowers"``: the TensorFlow flowers photos, downloaded once into the cache.

Standard library only: the API imports the class names, and the download needs no TensorFlow.
"""

from __future__ import annotations

import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from nas.core.errors import DatasetError

ARCHIVE_FOLDER = "flower_photos"
_CHUNK_BYTES = 1 << 20


def fetch_tf_flowers(
    cache_dir: Path,
    url: str,
    timeout_seconds: float,
    on_progress: Callable[[], None] | None = None,
) -> Path:
    """The folder of the extracted photos under ``cache_dir``, downloaded on first use;
    ``on_progress`` is called after each chunk downloaded and each file extracted (it may
    raise to stop).

    The archive is downloaded and extracted beside its final place and renamed into it, so
    concurrent workers and interrupted downloads never leave a half-written dataset behind;
    extraction refuses members that would land outside its folder.

    Raises:
        DatasetError: the archive cannot be downloaded or is not a usable tarball.
    """
    home = cache_dir / "tf_flowers"
    folder = home / ARCHIVE_FOLDER
    if folder.is_dir():
        return folder
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=home, prefix=".download-") as scratch:
        archive = Path(scratch) / "flower_photos.tgz"
        _download(url, archive, timeout_seconds, on_progress)
        extracted = Path(scratch) / "extracted"
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(extracted, _reported(tar, on_progress), filter="data")
        except (tarfile.TarError, OSError) as error:
            raise DatasetError(f"the tf_flowers archive from {url} is unusable: {error}") from None
        if not (extracted / ARCHIVE_FOLDER).is_dir():
            raise DatasetError(f"the tf_flowers archive from {url} has no {ARCHIVE_FOLDER}/")
        try:
            (extracted / ARCHIVE_FOLDER).rename(folder)
        except OSError:
            if not folder.is_dir():  # else another worker got there first, which is as good
                raise
    return folder


def _download(
    url: str, destination: Path, timeout_seconds: float, on_progress: Callable[[], None] | None
) -> None:
    try:
        with (
            urllib.request.urlopen(url, timeout=timeout_seconds) as response,
            destination.open("wb") as out,
        ):
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                if on_progress is not None:
                    on_progress()
    except urllib.error.HTTPError as error:
        raise DatasetError(_unavailable(url, f"HTTP {error.code} {error.reason}")) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise DatasetError(_unavailable(url, f"{reason} (is the worker offline?)")) from None


def _reported(
    tar: tarfile.TarFile, on_progress: Callable[[], None] | None
) -> Iterator[tarfile.TarInfo]:
    """The archive's members, ``on_progress`` called after each one is extracted."""
    for member in tar:
        yield member
        if on_progress is not None:
            on_progress()


def _unavailable(url: str, reason: str) -> str:
    return (
        f"cannot download tf_flowers from {url}: {reason}; set NAS_TF_FLOWERS_URL to a "
        "reachable copy of the archive, or give dataset.path"
    )
