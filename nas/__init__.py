"""Neural architecture search as a service for Keras."""
