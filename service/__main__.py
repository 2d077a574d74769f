"""``python -m service``: the ``nas`` command where its script is not installed."""

from service.cli import app

app(prog_name="nas")
