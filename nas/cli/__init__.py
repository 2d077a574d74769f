"""The ``nas`` command and the HTTP client it drives a running service with."""
