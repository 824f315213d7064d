"""MLOps engine pieces: the model registry, rollouts, monitoring of what a model does, continuous training."""
