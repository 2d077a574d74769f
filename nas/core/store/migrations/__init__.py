"""Alembic migrations of the service's schema."""
