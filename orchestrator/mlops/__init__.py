"""Models in production: the registry, rollouts, monitoring of what models do, and continuous training."""
