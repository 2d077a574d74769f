"""Token uses noted in memory and written together, off the requests' path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nas.api.token_uses import TOUCH_INTERVAL, TokenUses
from nas.core.errors import StoreError
from nas.core.store import Store, TokenRecord, create_store
from nas.core.tokens import issue_token

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def last_uses(store: Store) -> dict[str, datetime | None]:
    return {token.id: token.last_used_at for token in store.list_tokens()}


def used_at(token: TokenRecord, when: datetime | None) -> TokenRecord:
    return TokenRecord(**{**vars(token), "last_used_at": when})


def test_stale_uses_are_written_together_once(store: Store) -> None:
    first, second = (issue_token(store, "alice").record for _ in range(2))
    uses = TokenUses()
    uses.note(first, NOW)
    uses.note(used_at(second, NOW - TOUCH_INTERVAL * 2), NOW)
    uses.note(first, NOW + timedelta(seconds=1))  # the first use noted is kept

    assert uses.flush(store) == 2
    assert uses.flush(store) == 0
    assert last_uses(store) == {first.id: NOW, second.id: NOW}


def test_a_recent_use_is_not_noted_again(store: Store) -> None:
    token = issue_token(store, "alice").record
    uses = TokenUses()
    uses.note(used_at(token, NOW - TOUCH_INTERVAL / 2), NOW)

    assert uses.flush(store) == 0
    assert last_uses(store) == {token.id: None}


def test_uses_survive_a_failed_write(store: Store, tmp_path: Path) -> None:
    token = issue_token(store, "alice").record
    uses = TokenUses()
    uses.note(token, NOW)
    without_tables = create_store(f"sqlite:///{tmp_path / 'empty.db'}")

    with pytest.raises(StoreError):
        uses.flush(without_tables)
    without_tables.dispose()

    assert uses.flush(store) == 1
    assert last_uses(store) == {token.id: NOW}
