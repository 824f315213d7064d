"""What every request handler of the REST API shares: the server's settings and its context (store, tokens, bundles,
operations, checks), kept on the app as `app.state.ctx`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.api.intake import BundleStore, shared_pool
from orchestrator.api.operations import Operations
from orchestrator.api.security import Tokens
from orchestrator.state import StateStore


@dataclass
class ApiSettings:
    """What the server accepts; the defaults are the safe ones."""

    auth: bool = True                      # False only with --insecure-no-auth on a loopback bind
    allow_local_processes: bool = False    # nodes that run code on this machine (orchestrator/api/boundary.py)
    max_body_bytes: int = 10 * 2 ** 20
    max_nodes: int = 1000
    max_instances: int = 5000
    validation_timeout: float = 10.0
    workers: int = 4                       # operations running at once (each on its own infrastructure)
    check_processes: int = 2               # worker processes that load and check received descriptors
    cluster: bool = False                  # several servers share the state: operations are claimed, not owned


class ApiContext:
    """Everything a request handler needs: the store, settings, tokens, bundles, operations and checks."""

    def __init__(self, store: StateStore, settings: ApiSettings, tokens: Tokens | None):
        self.store, self.settings, self.tokens = store, settings, tokens
        self.bundles = BundleStore(os.path.join(store.home, "api", "bundles"))
        self.ops = Operations(store, settings.workers, settings.cluster)
        self.checks = shared_pool(settings.check_processes)
        self.started = time.time()
        # other Prometheus registries served on the same authenticated /metrics (e.g. the maintain loop's)
        self.extra_registries: list = []
        self.on_stop: list = []   # run when the server stops gracefully (in the app's lifespan)
        self._doc_cache: dict[Any, bytes] = {}

    def cached_now(self, key: Any) -> bytes | None:
        """The cached document if nothing changed, without waiting for the database (for the event loop)."""
        stamp = self.store.change_stamp(blocking=False)
        return None if stamp is None else self._doc_cache.get((key, stamp))

    def cached(self, key: Any, build) -> bytes:
        """A JSON document cached until anything is written to the state database."""
        stamp = (key, self.store.change_stamp())
        body = self._doc_cache.get(stamp)
        if body is None:
            body = json.dumps(build(), default=str, separators=(",", ":")).encode()
            if len(self._doc_cache) > 256:
                self._doc_cache.clear()
            self._doc_cache[stamp] = body
        return body
