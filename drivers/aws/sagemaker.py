"""The `sagemaker` driver: a real-time inference endpoint (model + endpoint config + endpoint) per Strato instance.

A node's Strato instance count is the number of *endpoints* (normally 1). The machines behind an
endpoint are its production variant's instance count: the property `instance_count`. Changing it
(e.g. through an input) does not replace the endpoint: `update` calls
update_endpoint_weights_and_capacities on the variant in place. Changing the image, model data or
instance type does replace the endpoint. Delete removes endpoint, endpoint config and model.
"""

from __future__ import annotations

from typing import Any

from drivers.aws.common import (TAG_KEY, AwsSettings, ServiceRoleNode, client, error_code, resource_name,
                                strato_tags, translate)
from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus, Pricing
from drivers.common import node_of_key, poll

BACKEND = "sagemaker"
POLL_S = 0.5


def _exists_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return error_code(exc) in ("ValidationException", "ResourceInUse") and ("exist" in text or "in use" in text)


class SageMakerDriver(ServiceRoleNode, Driver):
    name = BACKEND

    BACKEND = BACKEND
    pricing = Pricing(table="sagemaker", size=("instance_type",), default="ml.m5.large", count="instance_count")
    ROLE_SERVICE = "sagemaker.amazonaws.com"
    ROLE_SUFFIX = "sm"

    def start(self, spec: InstanceSpec) -> dict:
        props, key = spec.properties, spec.key
        settings = AwsSettings.for_properties(props)
        sm = client("sagemaker", settings)
        name = resource_name(key, limit=63)
        if not props.get("image"):
            raise DriverError(f"node '{spec.node}': sagemaker needs `image` (the inference container)", backend=BACKEND)
        role = self.role_arn(spec)
        count = int(props.get("instance_count") or 1)
        instance_type = str(props.get("instance_type") or "ml.m5.large")
        variant = str(props.get("variant_name") or "AllTraffic")
        tags = strato_tags(spec)
        container: dict[str, Any] = {"Image": str(props["image"])}
        if props.get("model_data_url"):
            container["ModelDataUrl"] = str(props["model_data_url"])
        if props.get("environment"):
            container["Environment"] = {str(k): str(v) for k, v in props["environment"].items()}
        handle = {"endpoint_name": name, "model_name": name, "config_name": name, "variant": variant,
                  "instance_type": instance_type, "instance_count": count, "image": container["Image"],
                  "model_data_url": container.get("ModelDataUrl"), "key": key, **settings.to_dict()}
        # Each step tolerates "already exists": a retried or resumed create picks up where it stopped.
        steps = [
            ("create model", lambda: sm.create_model(ModelName=name, PrimaryContainer=container,
                                                     ExecutionRoleArn=role, Tags=tags)),
            ("create endpoint config", lambda: sm.create_endpoint_config(
                EndpointConfigName=name, Tags=tags,
                ProductionVariants=[{"VariantName": variant, "ModelName": name, "InitialInstanceCount": count,
                                     "InstanceType": instance_type, "InitialVariantWeight": 1.0}])),
            ("create endpoint", lambda: sm.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)),
        ]
        for doing, call in steps:
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                if not _exists_error(exc):
                    raise translate(exc, spec.node, BACKEND, doing) from None
        return handle

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        sm = client("sagemaker", AwsSettings.from_handle(handle))
        self._wait_in_service(sm, handle["endpoint_name"], spec.node, self._timeout(spec))
        return handle

    @staticmethod
    def _timeout(spec: InstanceSpec) -> float:
        return min(float(spec.properties.get("wait_timeout") or 1800), spec.timeout)

    @staticmethod
    def _wait_in_service(sm, name: str, node: str, timeout: float) -> dict:
        last: dict = {}

        def in_service() -> dict | None:
            try:
                desc = sm.describe_endpoint(EndpointName=name)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, node, BACKEND, f"describe endpoint {name}") from None
            last["status"] = status = desc.get("EndpointStatus")
            if status == "Failed":
                raise DriverError(f"node '{node}': sagemaker endpoint {name} failed: "
                                  f"{desc.get('FailureReason', 'no reason given')}", backend=BACKEND)
            return desc if status == "InService" else None

        return poll(in_service, timeout, POLL_S, lambda: DriverError(
            f"node '{node}': sagemaker endpoint {name} not InService within {timeout:g} s "
            f"(status {last.get('status')})", backend=BACKEND))

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """Change only the variant's instance count in place; None when anything else changed (replace)."""
        props = spec.properties
        same = (str(props.get("instance_type") or "ml.m5.large") == handle.get("instance_type")
                and str(props.get("image")) == handle.get("image")
                and (props.get("model_data_url") or None) == handle.get("model_data_url")
                and AwsSettings.for_properties(props) == AwsSettings.from_handle(handle))
        if not same:
            return None
        count = int(props.get("instance_count") or 1)
        sm = client("sagemaker", AwsSettings.from_handle(handle))
        if count != handle.get("instance_count"):
            try:
                sm.update_endpoint_weights_and_capacities(
                    EndpointName=handle["endpoint_name"],
                    DesiredWeightsAndCapacities=[{"VariantName": handle["variant"], "DesiredInstanceCount": count}])
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, BACKEND, f"set the instance count of {handle['endpoint_name']} "
                                f"to {count}") from None
            self._wait_in_service(sm, handle["endpoint_name"], spec.node, self._timeout(spec))
        return {**handle, "instance_count": count}

    def observe(self, handle: dict) -> Observed:
        sm = client("sagemaker", AwsSettings.from_handle(handle))
        name = handle["endpoint_name"]
        try:
            desc = sm.describe_endpoint(EndpointName=name)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ValidationException":
                return Observed(ObservedStatus.MISSING, {"endpoint_name": name}, "endpoint not found")
            raise translate(exc, node_of_key(handle.get("key", "?")), BACKEND, f"describe endpoint {name}") from None
        variants = desc.get("ProductionVariants") or [{}]
        attrs = {"endpoint_name": name, "endpoint_arn": desc.get("EndpointArn"), "status": desc.get("EndpointStatus"),
                 "instance_type": handle.get("instance_type"),
                 "instance_count": variants[0].get("DesiredInstanceCount", variants[0].get("CurrentInstanceCount",
                                                                                             handle.get("instance_count"))),
                 "region": handle.get("region"), "backend": BACKEND}
        status = desc.get("EndpointStatus")
        if status in ("InService", "Creating", "Updating", "SystemUpdating"):
            return Observed(ObservedStatus.RUNNING, attrs)
        if status == "Failed":
            return Observed(ObservedStatus.FAILED, attrs, desc.get("FailureReason", ""))
        return Observed(ObservedStatus.MISSING, attrs, f"endpoint is {status}")

    def delete(self, handle: dict) -> None:
        sm = client("sagemaker", AwsSettings.from_handle(handle))
        node = node_of_key(handle.get("key", "?"))
        for doing, call in (("delete endpoint", lambda: sm.delete_endpoint(EndpointName=handle["endpoint_name"])),
                            ("delete endpoint config",
                             lambda: sm.delete_endpoint_config(EndpointConfigName=handle["config_name"])),
                            ("delete model", lambda: sm.delete_model(ModelName=handle["model_name"]))):
            try:
                call()
            except Exception as exc:  # noqa: BLE001
                # "Could not find ..." is a ValidationException: already gone is what we want.
                if error_code(exc) != "ValidationException":
                    raise translate(exc, node, BACKEND, doing) from None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        settings = AwsSettings.for_properties(spec.properties if spec else {})
        sm = client("sagemaker", settings)
        name = resource_name(key, limit=63)
        try:
            desc = sm.describe_endpoint(EndpointName=name)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ValidationException":
                return None
            raise translate(exc, node_of_key(key), BACKEND, f"describe endpoint {name}") from None
        try:
            tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=desc["EndpointArn"]).get("Tags", [])}
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(key), BACKEND, f"read tags of endpoint {name}") from None
        if tags.get(TAG_KEY) != key:
            return None
        config = sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
        variant = (config.get("ProductionVariants") or [{}])[0]
        model = sm.describe_model(ModelName=variant.get("ModelName", name))
        return {"endpoint_name": name, "model_name": variant.get("ModelName", name),
                "config_name": desc["EndpointConfigName"], "variant": variant.get("VariantName", "AllTraffic"),
                "instance_type": variant.get("InstanceType"), "instance_count": variant.get("InitialInstanceCount"),
                "image": model.get("PrimaryContainer", {}).get("Image"),
                "model_data_url": model.get("PrimaryContainer", {}).get("ModelDataUrl"), "key": key, "adopted": True,
                **settings.to_dict()}
