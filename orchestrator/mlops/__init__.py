"""MLOps on the engine side: model registry, traffic routing, rollouts, drift monitoring and continuous training."""
