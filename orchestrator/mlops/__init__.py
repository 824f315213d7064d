"""MLOps in the engine: the model registry, progressive rollout of model versions, model monitoring."""
