"""Shared AWS plumbing: per-node connection settings, cached boto3 clients, error translation, naming, roles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from drivers.base import DriverError, InstanceSpec

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:  # pragma: no cover - reported when a node actually needs AWS
    boto3 = None

TAG_KEY, TAG_INFRA, TAG_NODE = "strato:key", "strato:infra", "strato:node"

# Throttling and transient server-side conditions: worth the engine's retry with backoff.
RETRYABLE_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
                   "ServiceUnavailable", "InternalError", "InternalFailure", "RequestTimeout",
                   "ResourceConflictException", "Unavailable"}
NOT_FOUND_CODES = {"InvalidInstanceID.NotFound", "ResourceNotFoundException", "ValidationException",
                   "InvalidGroup.NotFound", "NoSuchEntity"}


@dataclass(frozen=True)
class AwsSettings:
    """Where to talk to: kept in every handle so delete/observe reach the same place from another process."""

    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None

    @classmethod
    def for_properties(cls, props: dict[str, Any]) -> "AwsSettings":
        region = (props.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
        endpoint = props.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL") or None
        return cls(region or None, endpoint, props.get("profile") or None)

    @classmethod
    def from_handle(cls, handle: dict) -> "AwsSettings":
        return cls(handle.get("region"), handle.get("endpoint_url"), handle.get("profile"))

    def to_dict(self) -> dict:
        return {"region": self.region, "endpoint_url": self.endpoint_url, "profile": self.profile}


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def client(service: str, settings: AwsSettings):
    """A boto3 client, shared by threads (clients are thread-safe; sessions are not)."""
    if boto3 is None:
        raise DriverError("the AWS drivers need boto3: pip install 'strato[aws]'", backend=service)
    ident = (service, settings, os.environ.get("AWS_ACCESS_KEY_ID"))
    with _clients_lock:
        if ident not in _clients:
            session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
            # Short connect timeout and few SDK retries: the engine has its own retry and the
            # placement policy falls back to another backend when this one is unreachable.
            config = botocore.config.Config(connect_timeout=5, read_timeout=60, max_pool_connections=64,
                                            retries={"max_attempts": 2, "mode": "standard"})
            try:
                _clients[ident] = session.client(service, endpoint_url=settings.endpoint_url, config=config)
            except botocore.exceptions.BotoCoreError as exc:
                raise DriverError(f"cannot set up the AWS {service} client: {exc}", backend=service) from None
        return _clients[ident]


def error_code(exc: BaseException) -> str:
    if boto3 is not None and isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("Error", {}).get("Code", "")
    return ""


def translate(exc: BaseException, node: str, backend: str, doing: str) -> DriverError:
    """A DriverError naming node, backend and cause; retryable for throttling and unreachable endpoints."""
    if boto3 is not None and isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "Error"), err.get("Message", str(exc))
        return DriverError(f"node '{node}': {backend} refused to {doing}: {code}: {message}",
                           retryable=code in RETRYABLE_CODES, backend=backend)
    if boto3 is not None and isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                                              botocore.exceptions.ConnectTimeoutError,
                                              botocore.exceptions.ReadTimeoutError,
                                              botocore.exceptions.ConnectionClosedError)):
        return DriverError(f"node '{node}': {backend} unreachable while trying to {doing}: {exc}",
                           retryable=True, backend=backend)
    if boto3 is not None and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return DriverError(f"node '{node}': {backend}: no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                           "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the node's `profile`)", backend=backend)
    if boto3 is not None and isinstance(exc, botocore.exceptions.BotoCoreError):
        return DriverError(f"node '{node}': {backend} failed to {doing}: {exc}", backend=backend)
    return DriverError(f"node '{node}': {backend} failed to {doing}: {type(exc).__name__}: {exc}", backend=backend)


def resource_name(key: str, limit: int = 63) -> str:
    """A name AWS accepts ([A-Za-z0-9-], bounded length) that is a pure function of the instance key."""
    base = re.sub(r"[^A-Za-z0-9-]+", "-", "strato-" + key).strip("-")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    room = limit - len(digest) - 1
    return f"{base[:room].rstrip('-')}-{digest}"


def strato_tags(spec: InstanceSpec, extra: dict | None = None) -> list[dict]:
    tags = {TAG_KEY: spec.key, TAG_INFRA: spec.infra, TAG_NODE: spec.node}
    for k, v in (extra or {}).items():
        tags[str(k)] = str(v)
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def ensure_service_role(settings: AwsSettings, name: str, service_principal: str, node: str, backend: str) -> str:
    """An IAM role the service may assume (created when the node names none); returns its ARN."""
    iam = client("iam", settings)
    try:
        return iam.get_role(RoleName=name)["Role"]["Arn"]
    except Exception as exc:  # noqa: BLE001 - only NoSuchEntity means "create it"
        if error_code(exc) != "NoSuchEntity":
            raise translate(exc, node, backend, f"look up IAM role {name}") from None
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": service_principal}}]}
    try:
        return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                               Description="created by Strato for one node; removed on destroy",
                               Tags=[{"Key": TAG_NODE, "Value": node}])["Role"]["Arn"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) == "EntityAlreadyExists":
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        raise translate(exc, node, backend, f"create IAM role {name}") from None


def delete_service_role(settings: AwsSettings, name: str, node: str, backend: str) -> None:
    iam = client("iam", settings)
    try:
        iam.delete_role(RoleName=name)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) != "NoSuchEntity":
            raise translate(exc, node, backend, f"delete IAM role {name}") from None


class ServiceRoleNode:
    """Driver mixin: one IAM role per node for a service (Lambda, SageMaker) unless `role_arn` is given.

    The role is made in prepare_node (stored as node attributes) and removed in release_node.
    """

    BACKEND = ""
    ROLE_SERVICE = ""   # e.g. lambda.amazonaws.com
    ROLE_SUFFIX = ""    # distinguishes the roles of different services for one node

    def prepare_node(self, spec) -> dict[str, Any]:
        if spec.node_attributes:
            return dict(spec.node_attributes)
        props = spec.properties
        if props.get("role_arn"):
            return {}
        settings = AwsSettings.for_properties(props)
        role = resource_name(f"{spec.infra}/{spec.node}/{self.ROLE_SUFFIX}", limit=64)
        arn = ensure_service_role(settings, role, self.ROLE_SERVICE, spec.node, self.BACKEND)
        return {"backend": self.BACKEND, "role_name": role, "role_arn": arn, **settings.to_dict()}

    def role_arn(self, spec) -> str:
        """The node's `role_arn`, or the role prepare_node made for it."""
        role = spec.properties.get("role_arn") or spec.node_attributes.get("role_arn")
        if not role:
            raise DriverError(f"node '{spec.node}': {self.BACKEND} needs `role_arn`", backend=self.BACKEND)
        return str(role)

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        if node_attributes.get("role_name"):
            delete_service_role(AwsSettings.from_handle(node_attributes), node_attributes["role_name"],
                                node_attributes["role_name"], self.BACKEND)
