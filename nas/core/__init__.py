"""The core: settings, errors, specs and space definitions, the store, artifacts and
dataset checks. Imports neither FastAPI nor Keras; everything else stands on it."""
