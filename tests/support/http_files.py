"""A tf_flowers-style archive of real photos, served over real HTTP from a local thread."""

from __future__ import annotations

import functools
import http.server
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.flowers import copy_flowers_slice

ARCHIVE_NAME = "flower_photos.tgz"


def flowers_archive(folder: Path, per_class: int) -> Path:
    """Write ``folder/flower_photos.tgz``: ``flower_photos/<class>/*.jpg`` and a LICENSE file,
    laid out like the official archive, with ``per_class`` photos of each of the 5 classes."""
    photos = copy_flowers_slice(folder / "build" / "flower_photos", per_class=per_class)
    (photos / "LICENSE.txt").write_text("photos under CC-BY licenses")
    archive = folder / ARCHIVE_NAME
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(photos, arcname="flower_photos")
    return archive


def _quiet_handler(directory: Path) -> type[http.server.SimpleHTTPRequestHandler]:
    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    return functools.partial(Handler, directory=str(directory))  # type: ignore[return-value]


@contextmanager
def serve_files(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 (``port``, or a free one); yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _quiet_handler(directory))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
