"""Real flower photos for tests, copied in small deterministic slices out of the shared folder.

``FLOWERS`` (outside the repository, never written to) holds 2,498 JPEG photos of 192x192 in
five class folders: daisy, dandelion, roses, sunflowers, tulips. Tests copy the few they need
into a temporary folder with :func:`copy_flowers_slice`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FLOWERS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "flowers"


def flower_classes() -> list[str]:
    """The class folder names of ``FLOWERS``, sorted."""
    if not FLOWERS.is_dir():
        raise FileNotFoundError(f"the flowers photos are missing: expected them in {FLOWERS}")
    return sorted(entry.name for entry in FLOWERS.iterdir() if entry.is_dir())


def copy_flowers_slice(dest: Path, per_class: int, classes: int = 5, start: int = 0) -> Path:
    """Copy ``per_class`` photos (by name, from the ``start``-th) of the first ``classes`` classes
    to ``dest``; slices with different ``start``s share no photo.

    ``dest`` is created if needed and gets one subfolder per class, like ``FLOWERS``; it is
    returned, ready to pass to ``nas.core.folders.scan_folder``.
    """
    names = flower_classes()
    if not 1 <= classes <= len(names):
        raise ValueError(f"classes must be between 1 and {len(names)}, got {classes}")
    for name in names[:classes]:
        photos = sorted(FLOWERS.joinpath(name).glob("*.jpg"))
        if len(photos) < start + per_class:
            raise ValueError(f"{name} has {len(photos)} photos, fewer than {start + per_class}")
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        for photo in photos[start : start + per_class]:
            shutil.copy2(photo, folder / photo.name)
    return dest
