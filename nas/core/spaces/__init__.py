"""Search spaces as data: hyperparameters, their bounds and restrictions, and the facts
the API checks at submit (no Keras)."""
