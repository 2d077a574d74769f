"""API tokens: how they are made, shown once, hashed and recognised.

A token reads ``nas_<id>_<secret>``: the id is public (``nas token list`` shows it, logs may
name it), the secret is 256 random bits. The store keeps only the SHA-256 of the whole token;
a fast hash is enough because the secret is random, not a password that could be guessed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from nas.core.store import Store, TokenRecord

PREFIX = "nas"
OWNER_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
FIRST_TOKEN_HINT = "create an API token with: nas token create --owner you"
_TOKEN = re.compile(rf"{PREFIX}_(?P<id>[0-9a-f]{{16}})_[A-Za-z0-9_-]{{43}}")


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the only moment its secret exists outside its holder."""

    record: TokenRecord
    secret: str = field(repr=False)


def hash_token(token: str) -> str:
    """The hex SHA-256 the store keeps in place of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id_of(token: str) -> str | None:
    """The public id inside a well-formed token; None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match["id"] if match else None


def valid_owner(owner: str) -> bool:
    """Owner names: 1-64 letters, digits, ``._@-``, starting with a letter or digit."""
    return re.fullmatch(OWNER_PATTERN, owner) is not None


def issue_token(store: Store, owner: str, *, admin: bool = False) -> IssuedToken:
    """Create a token for ``owner``; the caller shows ``secret`` once and forgets it."""
    if not valid_owner(owner):
        raise ValueError(f"owner must match {OWNER_PATTERN}")
    token_id = secrets.token_hex(8)
    secret = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    record = store.create_token(
        token_id=token_id, owner=owner, token_hash=hash_token(secret), admin=admin
    )
    return IssuedToken(record=record, secret=secret)


def find_active_token(store: Store, token: str) -> TokenRecord | None:
    """The unrevoked token record ``token`` stands for, or None."""
    token_id = token_id_of(token)
    if token_id is None:
        return None
    return store.get_active_token(token_id, hash_token(token))


def has_active_token(store: Store) -> bool:
    """Whether any token can open the API yet."""
    return any(token.active for token in store.list_tokens())
