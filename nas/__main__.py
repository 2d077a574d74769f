"""``python -m nas``: the ``nas`` command where its script is not installed."""

from nas.cli.main import app

app(prog_name="nas")
