"""Keeping every dataset file a search reads inside the data roots (NAS_DATA_ROOTS).

The API checks at submit and the worker again at claim time, through the same
:class:`Confinement`: each path, folder entry and glob match is resolved (every link followed)
and checked against the roots *before* anything is learned about its target, so the answer
never depends on what exists outside them. Imports only the standard library.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

OUTSIDE_ROOTS = "must lie inside one of the configured data roots (NAS_DATA_ROOTS)"
LINKS_OUTSIDE = "holds links to files outside the configured data roots (NAS_DATA_ROOTS)"
DOT_DOT_IN_GLOB = "may not hold '..' (write the glob from a data root down)"
GLOB_CHARACTERS = frozenset("*?[")


class OutsideRoots(ValueError):
    """A path, link or glob that reaches outside the data roots; the message is one of the
    fixed ones above, naming no path."""


class EntryLimitReached(Exception):
    """A listing went past the entries the :class:`Confinement` may examine."""


class Confinement:
    """Checks paths against ``roots`` (resolved) and lists folders for a dataset check.

    With ``max_entries``, listing more folder entries than that in all raises
    :class:`EntryLimitReached`, so that a check on a huge folder stays cheap.
    """

    def __init__(self, roots: Sequence[Path], max_entries: int | None = None) -> None:
        self.roots = tuple(Path(os.path.realpath(root)) for root in roots)
        self.max_entries = max_entries
        self._listed = 0

    def resolve(self, raw_path: str | Path) -> Path:
        """``raw_path`` with every link and ``..`` resolved, if that lies inside a root.

        Raises:
            OutsideRoots: with :data:`OUTSIDE_ROOTS`, whether or not the path exists.
        """
        resolved = self._real_path(raw_path)
        if resolved is None:
            raise OutsideRoots(OUTSIDE_ROOTS)
        return resolved

    def readable(self, raw_path: str | Path) -> bool:
        """Whether ``raw_path`` resolves inside a root to a folder this process may list, or
        a file it may read; cheap (lists nothing). False for one outside the roots whether
        or not it exists there: it is not looked at."""
        resolved = self._real_path(raw_path)
        if resolved is None:
            return False
        if resolved.is_dir():
            return os.access(resolved, os.R_OK | os.X_OK)
        return resolved.is_file() and os.access(resolved, os.R_OK)

    def entries(self, folder: Path) -> Iterator[os.DirEntry[str]]:
        """The entries of ``folder``, hidden ones too, unchecked: pass each one the caller
        examines to :meth:`confined` before asking whether it is a folder or a file.

        Raises:
            EntryLimitReached: more entries were listed than ``max_entries``.
            OSError: ``folder`` cannot be listed.
        """
        with os.scandir(folder) as listing:
            for entry in listing:
                self._listed += 1
                if self.max_entries is not None and self._listed > self.max_entries:
                    raise EntryLimitReached
                yield entry

    def confined(self, entry: os.DirEntry[str], message: str = LINKS_OUTSIDE) -> Path:
        """The path of an entry of a folder whose real path lies inside the roots, resolved
        if the entry is a link (as the path is, if the folder is resolved).

        Raises:
            OutsideRoots: with ``message``, the entry is a link out of the roots (whether or
                not its target exists: the target is not looked at).
        """
        # A plain entry of a folder that really lies inside the roots lies inside them too.
        if not entry.is_symlink():
            return Path(entry.path)
        resolved = self._real_path(entry.path)
        if resolved is None:
            raise OutsideRoots(message)
        return resolved

    def resolve_glob(self, pattern: str) -> str:
        """``pattern`` with its part before the first wildcard resolved like a path.

        Raises:
            OutsideRoots: the glob holds ``..`` (:data:`DOT_DOT_IN_GLOB`: after a wildcard it
                could climb out of what was checked), or its fixed part lies outside the roots.
        """
        parts = Path(pattern).parts
        if ".." in parts:
            raise OutsideRoots(DOT_DOT_IN_GLOB)
        fixed = _first_wildcard(parts)
        folder = self.resolve(Path(*parts[:fixed]) if fixed else ".")
        return str(folder.joinpath(*parts[fixed:]))

    def glob(self, pattern: str) -> list[Path]:
        """The files matching a local glob, sorted, each with its links resolved.

        ``*``, ``?`` and ``[...]`` match within one path component, hidden names too (as
        TensorFlow's glob does); only folders inside the roots are listed.

        Raises:
            OutsideRoots: as :meth:`resolve_glob`, or an entry the glob reaches is a link out
                of the roots (:data:`OUTSIDE_ROOTS`, whether or not its target exists).
            EntryLimitReached: more entries were listed than ``max_entries``.
        """
        parts = Path(self.resolve_glob(pattern)).parts
        fixed = _first_wildcard(parts)
        candidates = [Path(*parts[:fixed])]
        for part in parts[fixed:]:
            candidates = [found for folder in candidates for found in self._step(folder, part)]
        return sorted(path for path in candidates if path.is_file())

    def _step(self, folder: Path, part: str) -> list[Path]:
        """The resolved paths in ``folder`` that ``part`` (one glob component) names."""
        if not GLOB_CHARACTERS & set(part):
            path = folder / part
            return [self.resolve(path)] if path.is_symlink() else [path]
        try:
            return [
                self.confined(entry, OUTSIDE_ROOTS)
                for entry in self.entries(folder)
                if fnmatch.fnmatchcase(entry.name, part)
            ]
        except OSError:  # not a folder, gone, unreadable: it holds no match
            return []

    def read_bytes(self, path: Path) -> bytes:
        """The bytes of the file at ``path``, checked once it is open to be a file inside a
        root: a link swapped in after the dataset was checked cannot lead the read outside.

        Raises:
            OutsideRoots: with :data:`LINKS_OUTSIDE`, whether or not the outside file exists.
            OSError: the file cannot be read.
        """
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as file:
            # The opened file must be the one the resolved path names now, and that path must
            # lie inside a root: swapping the link back after the open changes the first.
            resolved = self._real_path(path)
            opened = os.fstat(descriptor)
            try:
                named = os.stat(resolved) if resolved is not None else None
            except OSError:
                named = None
            if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
                raise OutsideRoots(LINKS_OUTSIDE)
            return file.read()

    def _real_path(self, raw_path: str | Path) -> Path | None:
        try:
            resolved = Path(os.path.realpath(raw_path))
        except (OSError, ValueError):  # a NUL byte
            return None
        return resolved if any(resolved.is_relative_to(root) for root in self.roots) else None


def fixed_part(pattern: str) -> str:
    """The part of a local glob before its first wildcard component: the folder its matches
    lie in (the pattern itself, if it holds no wildcard)."""
    parts = Path(pattern).parts
    fixed = parts[: _first_wildcard(parts)]
    return str(Path(*fixed)) if fixed else "."


def _first_wildcard(parts: Sequence[str]) -> int:
    """The index of the first path component holding a wildcard; ``len(parts)`` if none."""
    return next((i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part)), len(parts))
