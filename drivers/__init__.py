"""Backend drivers: the driver contract (base.py), the registry (providers.py) and one module per backend."""

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.providers import get_driver, known_drivers

__all__ = ["Driver", "DriverError", "InstanceSpec", "Observed", "ObservedStatus", "get_driver", "known_drivers"]
