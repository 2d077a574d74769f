"""Schema migrations and the start-up check that the database matches this code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from nas.core.errors import SchemaMismatchError
from nas.core.store import migrations


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:
        raise SchemaMismatchError("the migrations folder has no revision")
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema to ``revision``."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def ensure_schema_current(engine: Engine) -> None:
    """Raise SchemaMismatchError, naming the fix, unless the database is at this code's head."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaMismatchError(
            "the database has no schema yet: run `nas migrate` (same NAS_DATABASE_URL) first"
        )
    known = {
        rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
    }
    if current not in known:
        raise SchemaMismatchError(
            f"the database schema ({current}) is newer than this code ({head}): "
            "upgrade this installation of the service"
        )
    raise SchemaMismatchError(
        f"the database schema ({current}) is older than this code ({head}): run `nas migrate`"
    )
