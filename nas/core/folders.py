"""Folders of class subfolders of photos, listed in a deterministic order.

Standard library only: the API checks a submitted folder with it, and the worker lists the
folder it decodes with it, both through the same :class:`Confinement`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nas.core.data_confinement import Confinement
from nas.core.errors import DatasetError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})


@dataclass(frozen=True)
class FolderScan:
    """The image files of a folder of class subfolders, in a deterministic order.

    ``labels[i]`` is the index in ``class_names`` of the folder holding ``files[i]``.
    """

    root: Path
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    #: The data roots the files were checked against; reads check the opened files again.
    confinement: Confinement | None = field(default=None, compare=False)


def scan_folder(
    path: Path, max_images_per_class: int | None = None, confinement: Confinement | None = None
) -> FolderScan:
    """List the images of ``path``, one subfolder per class, sorted by name.

    Hidden entries are ignored, as are files without an image suffix and anything nested
    deeper than the class subfolders. With ``max_images_per_class``, only the first images
    (by name) of each class are kept. With ``confinement``, ``path`` is resolved and must lie
    in its data roots, and no entry examined (a visible entry of ``path``, an image of a class
    folder) may link out of them, checked before the link's target is looked at; without, the
    folder is one the worker made itself.

    Raises:
        DatasetError: ``path`` is not a readable folder, has fewer than 2 class subfolders,
            or a class subfolder holds no images.
        OutsideRoots: ``path``, a class folder or an image leads out of the data roots.
        EntryLimitReached: the folders hold more entries than ``confinement`` may examine.
    """
    if confinement is not None:
        path = confinement.resolve(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder")
    try:
        class_dirs = sorted(
            (folder for entry, folder in _entries(path, confinement) if entry.is_dir()),
            key=lambda folder: folder.name,
        )
        per_class = [
            _image_files(folder, confinement)[:max_images_per_class] for folder in class_dirs
        ]
    except OSError as error:
        raise DatasetError(f"cannot read {path}: {error.strerror or error}") from error
    if len(class_dirs) < 2:
        raise DatasetError(
            f"{path} must hold one subfolder of images per class, at least 2; "
            f"found {len(class_dirs)}"
        )
    if not any(per_class):
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetError(f"no images ({suffixes}) in the class subfolders of {path}")
    empty = [folder.name for folder, files in zip(class_dirs, per_class, strict=True) if not files]
    if empty:
        raise DatasetError(f"class folders hold no images: {', '.join(empty)} (in {path})")
    return FolderScan(
        root=path,
        class_names=tuple(folder.name for folder in class_dirs),
        files=tuple(file for files in per_class for file in files),
        labels=tuple(label for label, files in enumerate(per_class) for _ in files),
        confinement=confinement,
    )


def _entries(
    folder: Path, confinement: Confinement | None, wanted: Callable[[str], bool] = bool
) -> Iterator[tuple[os.DirEntry[str], Path]]:
    """The visible entries of ``folder`` whose names are ``wanted``, each with its path under
    ``folder``, checked against ``confinement`` before the caller looks at its target."""
    listing = confinement.entries(folder) if confinement is not None else _scandir(folder)
    for entry in listing:
        if entry.name.startswith(".") or not wanted(entry.name):
            continue
        if confinement is not None:
            confinement.confined(entry)
        yield entry, folder / entry.name


def _scandir(folder: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as listing:
        yield from listing


def _image_files(folder: Path, confinement: Confinement | None) -> list[Path]:
    def image_name(name: str) -> bool:
        return Path(name).suffix.lower() in IMAGE_SUFFIXES

    return sorted(
        file for entry, file in _entries(folder, confinement, image_name) if entry.is_file()
    )
