"""The `lambda` driver: a Lambda function per Strato instance for serverless inference, optionally with a function URL.

The node's code artifact (a directory or a single file, relative to the descriptor) is zipped in
memory; the function's name is a pure function of the instance key, so a resumed create finds the
function it already made.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

from drivers.aws.common import TAG_KEY, AwsSettings, ServiceRoleNode, client, error_code, resource_name, translate
from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus, Pricing
from drivers.common import node_of_key, poll

BACKEND = "lambda"
POLL_S = 0.5


def package_code(path: str, node: str) -> bytes:
    """A deterministic zip of a file or directory tree (sorted names, fixed timestamps)."""
    if not os.path.exists(path):
        raise DriverError(f"node '{node}': lambda code artifact {path} does not exist", backend=BACKEND)
    files = []
    if os.path.isdir(path):
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(names):
                full = os.path.join(root, name)
                files.append((full, os.path.relpath(full, path)))
    else:
        files.append((path, os.path.basename(path)))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for full, arc in files:
            info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with open(full, "rb") as fh:
                zf.writestr(info, fh.read())
    return buf.getvalue()


class LambdaDriver(ServiceRoleNode, Driver):
    name = BACKEND
    path_properties = ("code",)

    BACKEND = BACKEND
    pricing = Pricing(per_use=True)  # 0 per hour when idle: see cost.lambda_monthly
    ROLE_SERVICE = "lambda.amazonaws.com"
    ROLE_SUFFIX = "fn"

    def start(self, spec: InstanceSpec) -> dict:
        props, key = spec.properties, spec.key
        settings = AwsSettings.for_properties(props)
        fn = client("lambda", settings)
        name = resource_name(key, limit=64)
        if not props.get("code"):
            raise DriverError(f"node '{spec.node}': lambda needs `code` (a file or directory)", backend=BACKEND)
        role = self.role_arn(spec)
        code = package_code(os.path.join(spec.descriptor_dir, str(props["code"])), spec.node)
        args: dict[str, Any] = {
            "FunctionName": name, "Runtime": str(props.get("runtime") or "python3.11"), "Role": role,
            "Handler": str(props.get("handler") or "handler.handler"), "Code": {"ZipFile": code},
            "MemorySize": int(props.get("memory_mb") or 128), "Timeout": int(props.get("timeout_s") or 3),
            "Tags": {TAG_KEY: key, "strato:infra": spec.infra, "strato:node": spec.node},
            "Description": f"Strato {key}",
        }
        if props.get("environment"):
            args["Environment"] = {"Variables": {str(k): str(v) for k, v in props["environment"].items()}}
        try:
            fn.create_function(**args)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "ResourceConflictException":  # exists: a resumed create
                raise translate(exc, spec.node, BACKEND, f"create function {name}") from None
        return {"function_name": name, "key": key, "memory_mb": args["MemorySize"], "url": None,
                **settings.to_dict()}

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        fn = client("lambda", AwsSettings.from_handle(handle))
        name = handle["function_name"]
        self._wait_active(fn, name, spec.node, min(float(spec.properties.get("wait_timeout") or 300), spec.timeout))
        if spec.properties.get("function_url"):
            handle = {**handle, "url": self._ensure_url(fn, name, spec.node)}
        return handle

    @staticmethod
    def _ensure_url(fn, name: str, node: str) -> str:
        try:
            return fn.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceConflictException":
                return fn.get_function_url_config(FunctionName=name)["FunctionUrl"]
            raise translate(exc, node, BACKEND, f"create a URL for function {name}") from None

    @staticmethod
    def _wait_active(fn, name: str, node: str, timeout: float) -> None:
        def active() -> bool | None:
            try:
                state = fn.get_function(FunctionName=name)["Configuration"].get("State", "Active")
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, node, BACKEND, f"read function {name}") from None
            if state == "Failed":
                raise DriverError(f"node '{node}': lambda function {name} failed to become active", backend=BACKEND)
            return True if state == "Active" else None

        poll(active, timeout, POLL_S, lambda: DriverError(
            f"node '{node}': lambda function {name} not active within {timeout:g} s", backend=BACKEND))

    def observe(self, handle: dict) -> Observed:
        fn = client("lambda", AwsSettings.from_handle(handle))
        name = handle["function_name"]
        try:
            conf = fn.get_function(FunctionName=name)["Configuration"]
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                return Observed(ObservedStatus.MISSING, {"function_name": name}, "function not found")
            raise translate(exc, node_of_key(handle.get("key", "?")), BACKEND, f"read function {name}") from None
        attrs = {"function_name": name, "function_arn": conf.get("FunctionArn"), "memory_mb": conf.get("MemorySize"),
                 "timeout_s": conf.get("Timeout"), "url": handle.get("url"), "region": handle.get("region"),
                 "backend": BACKEND}
        if conf.get("State", "Active") == "Failed":
            return Observed(ObservedStatus.FAILED, attrs, conf.get("StateReason", ""))
        return Observed(ObservedStatus.RUNNING, attrs)

    def delete(self, handle: dict) -> None:
        fn = client("lambda", AwsSettings.from_handle(handle))
        try:
            fn.delete_function(FunctionName=handle["function_name"])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) != "ResourceNotFoundException":
                raise translate(exc, node_of_key(handle.get("key", "?")), BACKEND,
                                f"delete function {handle['function_name']}") from None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        settings = AwsSettings.for_properties(spec.properties if spec else {})
        fn = client("lambda", settings)
        name = resource_name(key, limit=64)
        try:
            got = fn.get_function(FunctionName=name)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise translate(exc, node_of_key(key), BACKEND, f"read function {name}") from None
        if (got.get("Tags") or {}).get(TAG_KEY) != key:
            return None
        url = None
        try:
            url = fn.get_function_url_config(FunctionName=name)["FunctionUrl"]
        except Exception:  # noqa: BLE001 - no URL configured
            pass
        return {"function_name": name, "key": key, "memory_mb": got["Configuration"].get("MemorySize"), "url": url,
                "adopted": True, **settings.to_dict()}
