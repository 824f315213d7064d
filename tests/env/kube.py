"""kmock's KubernetesEmulator on loopback for the kubernetes driver's tests, a kubeconfig pointing at it, and a stand-in
kubelet: the emulator runs no controllers, so the stand-in marks Deployments ready and Jobs complete (or failed)
by patching their status subresource, as the kubelet and controllers of a real cluster would."""

from __future__ import annotations

import asyncio
import threading
import time

import yaml

RESOURCES = ("v1/pods", "v1/services", "v1/configmaps", "v1/namespaces", "apps/v1/deployments", "batch/v1/jobs")
FAIL_ENV = "STRATO_TEST_FAIL"   # a Job whose container has this variable set is marked Failed


class Emulator:
    """The emulator served in a thread of its own; `url`, `kubeconfig(path)`, `stop()`."""

    def __init__(self) -> None:
        import kmock
        self._kmock = kmock
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.url = ""
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name="kmock", daemon=True)
        self._thread.start()
        if not self._ready.wait(20) or self.error:
            raise RuntimeError(f"kmock did not start: {self.error}")

    def _serve(self) -> None:
        async def main() -> None:
            async with self._kmock.KubernetesEmulator() as emulator, self._kmock.Server(emulator) as server:
                for resource in RESOURCES:
                    emulator.resources[resource] = {}
                self.url = str(server.url).rstrip("/")
                self._stop, self._loop = asyncio.Event(), asyncio.get_running_loop()
                self._ready.set()
                await self._stop.wait()
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported by the constructor
            self.error = exc
            self._ready.set()

    def kubeconfig(self, path: str, contexts: dict[str, str] | None = None) -> str:
        """Write a kubeconfig for the emulator: one context per {name: namespace} (the first is current)."""
        contexts = contexts or {"kmock": "default"}
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": next(iter(contexts)),
               "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
               "users": [{"name": "kmock", "user": {"token": "test"}}],
               "contexts": [{"name": n, "context": {"cluster": "kmock", "user": "kmock", "namespace": ns}}
                            for n, ns in contexts.items()]}
        with open(path, "w") as fh:
            yaml.safe_dump(doc, fh)
        return path

    def stop(self) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class StandInKubelet:
    """Patches status the way a cluster would: Deployments get readyReplicas = replicas, Jobs Complete or Failed."""

    def __init__(self, url: str) -> None:
        from kubernetes import client
        cfg = client.Configuration()
        cfg.host = url
        api = client.ApiClient(cfg)
        self.apps, self.batch = client.AppsV1Api(api), client.BatchV1Api(api)
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-kubelet", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.paused:
                continue
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the emulator may be stopping; try again next tick
                pass

    def tick(self) -> None:
        for dep in self.apps.list_deployment_for_all_namespaces().items:
            want = dep.spec.replicas or 0
            if (dep.status.ready_replicas if dep.status else None) != want:
                self.apps.patch_namespaced_deployment_status(dep.metadata.name, dep.metadata.namespace, {
                    "status": {"replicas": want, "readyReplicas": want, "availableReplicas": want,
                               "observedGeneration": dep.metadata.generation or 1}})
        for job in self.batch.list_job_for_all_namespaces().items:
            if job.status and (job.status.succeeded or job.status.failed):
                continue
            env = {e.name for c in job.spec.template.spec.containers for e in (c.env or [])}
            failed = FAIL_ENV in env
            cond = {"type": "Failed" if failed else "Complete", "status": "True",
                    "reason": "BackoffLimitExceeded" if failed else "Completed", "message": "stand-in kubelet"}
            self.batch.patch_namespaced_job_status(job.metadata.name, job.metadata.namespace, {
                "status": {("failed" if failed else "succeeded"): 1, "conditions": [cond]}})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_for(predicate, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
