"""Images that imitate others in all but their pixels: same name, size and modification time."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from PIL import Image, PngImagePlugin

PADDING_KEY = "padding"
# A tEXt chunk's length, type and CRC fields, and the NUL after its keyword.
CHUNK_OVERHEAD = 4 + 4 + 4 + 1


def imitate(original: Path, dest: Path, color: tuple[int, int, int]) -> None:
    """Write at ``dest`` a PNG of one ``color`` as large as ``original``, with its mtime.

    Image decoders go by content, not suffix, so a ``.jpg`` name decodes as this PNG.
    """
    bare = _png(color, PngImagePlugin.PngInfo())
    padding = original.stat().st_size - len(bare) - CHUNK_OVERHEAD - len(PADDING_KEY)
    if padding < 0:
        raise ValueError(f"{original} is smaller than a PNG of one color")
    info = PngImagePlugin.PngInfo()
    info.add_text(PADDING_KEY, "x" * padding)
    dest.write_bytes(_png(color, info))
    stat = original.stat()
    os.utime(dest, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dest.stat().st_size == stat.st_size and dest.stat().st_mtime_ns == stat.st_mtime_ns


def imitate_folder(original: Path, dest: Path, color: tuple[int, int, int]) -> Path:
    """A copy of the folder of class subfolders ``original`` at ``dest`` whose every image is
    :func:`imitate`'s PNG of ``color``."""
    shutil.copytree(original, dest)
    for file in sorted(dest.rglob("*")):
        if file.is_file():
            imitate(original / file.relative_to(dest), file, color)
    return dest


def _png(color: tuple[int, int, int], info: PngImagePlugin.PngInfo) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()
