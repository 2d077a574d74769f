"""The worker: claims queued searches and runs them with KerasTuner."""
