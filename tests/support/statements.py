"""The SQL statements a store runs while a block runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from nas.core.store import Store


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store's engine runs meanwhile."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", note)
