"""The HTTP API."""

from nas.api.app import create_app

__all__ = ["create_app"]
