"""Digests of what files hold, computed once and remembered while each file stays the same.

Cache entries are keyed by these digests, not by file names, sizes and times, which anyone
who can write a file can copy from another one (``os.utime``). Hashing every file on every
search would cost about as much as reading it, so a digest is remembered under the cache
folder and trusted while the file's device, inode, size, modification time and change time
are those it had when it was hashed: rewriting a file in place sets its change time to now,
and no call sets it back. The index is one small JSON file per folder (by resolved path)
and kind of digest, replaced in one rename; workers sharing a cache folder at worst lose
each other's updates, and hash those files again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nas.worker.atomic_files import write_atomically

_log = logging.getLogger(__name__)


def new_digest() -> Any:
    """A running hash of the algorithm every digest here uses (``hashlib``'s interface)."""
    return hashlib.blake2b(digest_size=32)


def digest_bytes(data: bytes) -> str:
    """The digest of ``data``, as :func:`digest_file` gives it for a file holding ``data``."""
    digest = new_digest()
    digest.update(data)
    return digest.hexdigest()


def digest_file(path: Path) -> str:
    """The digest of the file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as file:
        return hashlib.file_digest(file, new_digest).hexdigest()


class DigestIndex:
    """Digests of one kind (e.g. of files, or of TFRecord records) of files, remembered in
    ``cache_dir``."""

    def __init__(self, cache_dir: Path, kind: str) -> None:
        self._folder = cache_dir / "digests"
        self._kind = kind

    def digests(
        self,
        files: Sequence[Path],
        compute: Callable[[Path], str],
        on_each: Callable[[], None] | None = None,
    ) -> list[str | None]:
        """The digest of each file: remembered while the file is unchanged, else
        ``compute(file)``'s, then remembered; None for a file that cannot be read.
        ``on_each`` is called after each file.

        Errors of ``compute`` (other than OSError) and of ``on_each`` propagate.
        """
        tables: dict[Path, _FolderTable] = {}
        digests = []
        for file in files:
            table = tables.get(file.parent)
            if table is None:
                table = tables[file.parent] = self._table(file.parent)
            digests.append(table.digest(file, compute))
            if on_each is not None:
                on_each()
        for table in tables.values():
            table.save()
        return digests

    def _table(self, folder: Path) -> _FolderTable:
        resolved = os.path.realpath(folder)
        name = hashlib.sha256(resolved.encode()).hexdigest()
        return _FolderTable(self._folder / f"{self._kind}-{name}.json")


class _FolderTable:
    """The remembered digests of one folder's files: name -> [identity..., digest]."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._entries = _read_table(path)
        self._changed = False

    def digest(self, file: Path, compute: Callable[[Path], str]) -> str | None:
        try:
            before = _identity(file)
            entry = self._entries.get(file.name)
            if entry is not None and entry[:-1] == before:
                return entry[-1]
            digest = compute(file)
            # A file that changed while it was hashed is hashed again next time.
            if _identity(file) == before:
                self._entries[file.name] = [*before, digest]
                self._changed = True
            return digest
        except OSError:
            return None

    def save(self) -> None:
        if self._changed:
            text = json.dumps(self._entries).encode()
            write_atomically(self._path, lambda out: out.write(text))


def _identity(file: Path) -> list[int]:
    stat = file.stat()
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


def _read_table(path: Path) -> dict[str, list]:
    try:
        entries = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        _log.warning("ignoring unreadable digest index %s: %s", path, error)
        return {}
    return entries if isinstance(entries, dict) else {}
