"""The `ec2` driver: one EC2 instance per Strato instance, tagged with its key, created idempotently.

A retried create sends the same ClientToken (derived from the instance key), so AWS returns the
instance it already made instead of a second one; `find` adopts by the `strato:key` tag what a
crashed build created but never recorded. The node's declared ports become one security group per
node of the infrastructure (prepare_node), removed again by release_node on destroy.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from drivers.aws.common import (TAG_INFRA, TAG_KEY, TAG_NODE, AwsSettings, client, error_code, resource_name,
                                strato_tags, translate)
from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus, Pricing
from drivers.common import DEPENDENCIES_META, node_of_key, poll, render_user_data

BACKEND = "ec2"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
POLL_S = 0.5


def client_token(key: str, generation: int = 1) -> str:
    """Idempotency token for run_instances: same key and generation -> same instance (max 64 chars)."""
    return f"strato-{hashlib.sha256(key.encode()).hexdigest()[:40]}-{generation}"


def _port_rules(ports: Any, node: str) -> list[dict]:
    rules = []
    for item in ports or []:
        if isinstance(item, int):
            item = {"port": item}
        if not isinstance(item, dict) or not isinstance(item.get("port"), int):
            raise DriverError(f"node '{node}': ports entries must be numbers or {{port, protocol, cidr}}, got {item!r}",
                              backend=BACKEND)
        rules.append({"IpProtocol": str(item.get("protocol", "tcp")), "FromPort": item["port"],
                      "ToPort": item.get("to_port", item["port"]),
                      "IpRanges": [{"CidrIp": str(item.get("cidr", "0.0.0.0/0"))}]})
    return rules


class Ec2Driver(Driver):
    name = BACKEND
    pricing = Pricing(table="ec2", size=("instance_type",), default="t3.micro")
    path_properties = ("cloud_init",)  # a one-line cloud_init names a file beside the descriptor

    def __init__(self) -> None:
        self._known_images: set[tuple[int, str]] = set()

    # -- node level: the security group --------------------------------------
    def prepare_node(self, spec: InstanceSpec) -> dict[str, Any]:
        if spec.node_attributes:
            return dict(spec.node_attributes)
        props = spec.properties
        rules = _port_rules(props.get("ports"), spec.node)
        if not rules:
            return {}
        settings = AwsSettings.for_properties(props)
        ec2 = client("ec2", settings)
        group_name = resource_name(f"{spec.infra}/{spec.node}", limit=200)
        try:
            found = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [group_name]}])
            groups = found.get("SecurityGroups", [])
            if groups:
                group_id = groups[0]["GroupId"]
            else:
                args: dict[str, Any] = {"GroupName": group_name,
                                        "Description": f"Strato: ports of node {spec.node} in {spec.infra}",
                                        "TagSpecifications": [{"ResourceType": "security-group",
                                                               "Tags": [{"Key": TAG_INFRA, "Value": spec.infra},
                                                                        {"Key": TAG_NODE, "Value": spec.node}]}]}
                if props.get("vpc_id"):
                    args["VpcId"] = props["vpc_id"]
                group_id = ec2.create_security_group(**args)["GroupId"]
                ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=rules)
        except DriverError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, spec.node, BACKEND, f"create security group {group_name}") from None
        return {"backend": BACKEND, "security_group_id": group_id, "security_group_name": group_name,
                **settings.to_dict()}

    def release_node(self, node_attributes: dict[str, Any]) -> None:
        group_id = node_attributes.get("security_group_id")
        if not group_id:
            return
        ec2 = client("ec2", AwsSettings.from_handle(node_attributes))
        # Terminating instances release the group only once they are gone; AWS says so with
        # DependencyViolation for a little while.
        deadline = time.monotonic() + 120
        while True:
            try:
                ec2.delete_security_group(GroupId=group_id)
                return
            except Exception as exc:  # noqa: BLE001
                code = error_code(exc)
                if code == "InvalidGroup.NotFound":
                    return
                if code == "DependencyViolation" and time.monotonic() < deadline:
                    time.sleep(2)
                    continue
                raise translate(exc, node_attributes.get("security_group_name", "?"), BACKEND,
                                f"delete security group {group_id}") from None

    # -- instances ------------------------------------------------------------
    def _image_id(self, ec2, props: dict, node: str) -> str:
        image = props.get("image")
        if isinstance(image, str) and image.startswith("ami-"):
            return self._checked_image(ec2, image, node)
        if isinstance(image, str):
            image = {"name": image}
        if not isinstance(image, dict) or not (image.get("name") or image.get("id")):
            raise DriverError(f"node '{node}': ec2 needs `image`: an AMI id (ami-...) or {{name: pattern}}",
                              backend=BACKEND)
        if image.get("id"):
            return self._checked_image(ec2, str(image["id"]), node)
        args: dict[str, Any] = {"Filters": [{"Name": "name", "Values": [str(image["name"])]}]}
        if image.get("owner"):
            args["Owners"] = [str(image["owner"])]
        try:
            images = ec2.describe_images(**args).get("Images", [])
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node, BACKEND, f"look up image {image['name']!r}") from None
        if not images:
            raise DriverError(f"node '{node}': ec2 has no image whose name matches {image['name']!r}", backend=BACKEND)
        return max(images, key=lambda i: i.get("CreationDate", ""))["ImageId"]

    def _checked_image(self, ec2, image_id: str, node: str) -> str:
        """The image id, once confirmed to exist (cached), so a typo fails with a clear message before any launch."""
        ident = (id(ec2), image_id)
        if ident in self._known_images:
            return image_id
        try:
            images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc).startswith("InvalidAMIID"):
                images = []
            else:
                raise translate(exc, node, BACKEND, f"look up image {image_id}") from None
        if not images:
            raise DriverError(f"node '{node}': ec2 has no image {image_id} (InvalidAMIID.NotFound)", backend=BACKEND)
        self._known_images.add(ident)
        return image_id

    def start(self, spec: InstanceSpec) -> dict:
        props, key = spec.properties, spec.key
        settings = AwsSettings.for_properties(props)
        ec2 = client("ec2", settings)
        image_id = self._image_id(ec2, props, spec.node)
        groups = list(props.get("security_group_ids") or [])
        if spec.node_attributes.get("security_group_id"):
            groups.append(spec.node_attributes["security_group_id"])
        args: dict[str, Any] = {
            "ImageId": image_id, "InstanceType": str(props.get("instance_type") or "t3.micro"),
            "MinCount": 1, "MaxCount": 1,
            "TagSpecifications": [{"ResourceType": "instance", "Tags": strato_tags(spec, {
                "Name": resource_name(key, 128), **(props.get("tags") or {})})}],
        }
        if props.get("key_name"):
            args["KeyName"] = str(props["key_name"])
        if props.get("subnet_id"):
            args["SubnetId"] = str(props["subnet_id"])
        if groups:
            args["SecurityGroupIds"] = groups
        if props.get("availability_zone"):
            args["Placement"] = {"AvailabilityZone": str(props["availability_zone"])}
        user_data = render_user_data(props, spec.metadata.get(DEPENDENCIES_META), "ec2", spec.node,
                                     spec.descriptor_dir)
        if user_data:
            args["UserData"] = user_data  # boto3 base64-encodes it
        # A token AWS already used for an instance that has since terminated returns that dead
        # instance; the next generation of the token then asks for a fresh one.
        instance = None
        for generation in range(1, 6):
            try:
                reply = ec2.run_instances(ClientToken=client_token(key, generation), **args)
            except Exception as exc:  # noqa: BLE001
                raise translate(exc, spec.node, BACKEND, f"run an instance of {image_id}") from None
            instance = reply["Instances"][0]
            if instance.get("State", {}).get("Name") not in ("shutting-down", "terminated"):
                break
        return {"instance_id": instance["InstanceId"], "key": key, **settings.to_dict()}

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        ec2 = client("ec2", AwsSettings.from_handle(handle))
        timeout = min(float(spec.properties.get("wait_timeout") or 300), spec.timeout)
        last: dict = {}

        def running() -> bool | None:
            state = self._describe(ec2, handle["instance_id"], spec.node)
            last["name"] = name = (state or {}).get("State", {}).get("Name")
            if name in ("shutting-down", "terminated", "stopped", "stopping"):
                reason = (state or {}).get("StateReason", {}).get("Message", name)
                raise DriverError(f"node '{spec.node}': ec2 instance {handle['instance_id']} went {name} while "
                                  f"starting: {reason}", backend=BACKEND)
            return True if name == "running" else None

        poll(running, timeout, POLL_S, lambda: DriverError(
            f"node '{spec.node}': ec2 instance {handle['instance_id']} not running within {timeout:g} s "
            f"(state {last.get('name')})", backend=BACKEND))
        return handle

    @staticmethod
    def _describe(ec2, instance_id: str, node: str) -> dict | None:
        try:
            reply = ec2.describe_instances(InstanceIds=[instance_id])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return None
            raise translate(exc, node, BACKEND, f"describe instance {instance_id}") from None
        for res in reply.get("Reservations", []):
            for inst in res.get("Instances", []):
                return inst
        return None

    def observe(self, handle: dict) -> Observed:
        ec2 = client("ec2", AwsSettings.from_handle(handle))
        node = node_of_key(handle.get("key", "?"))
        inst = self._describe(ec2, handle["instance_id"], node)
        if inst is None:
            return Observed(ObservedStatus.MISSING, {"instance_id": handle["instance_id"]}, "instance not found")
        state = inst.get("State", {}).get("Name", "unknown")
        attrs = {"instance_id": inst["InstanceId"], "private_address": inst.get("PrivateIpAddress"),
                 "public_address": inst.get("PublicIpAddress"), "state": state,
                 "instance_type": inst.get("InstanceType"), "image_id": inst.get("ImageId"),
                 "region": handle.get("region"), "backend": BACKEND}
        if state in ("pending", "running"):
            return Observed(ObservedStatus.RUNNING, attrs)
        if state in ("stopping", "stopped"):
            return Observed(ObservedStatus.FAILED, attrs, f"instance is {state}")
        return Observed(ObservedStatus.MISSING, attrs, f"instance is {state}")

    def delete(self, handle: dict) -> None:
        settings = AwsSettings.from_handle(handle)
        ec2 = client("ec2", settings)
        node = node_of_key(handle.get("key", "?"))
        try:
            ec2.terminate_instances(InstanceIds=[handle["instance_id"]])
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "InvalidInstanceID.NotFound":
                return
            raise translate(exc, node, BACKEND, f"terminate instance {handle['instance_id']}") from None

    def find(self, key: str, spec: InstanceSpec | None) -> dict | None:
        settings = AwsSettings.for_properties(spec.properties if spec else {})
        ec2 = client("ec2", settings)
        try:
            reply = ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [key]},
                                                    {"Name": "instance-state-name", "Values": LIVE_STATES}])
        except Exception as exc:  # noqa: BLE001
            raise translate(exc, node_of_key(key), BACKEND, "look up instances by tag") from None
        found = [i for r in reply.get("Reservations", []) for i in r.get("Instances", [])]
        if not found:
            return None
        # Should a second one ever exist, keep the oldest and say nothing: the newest is the
        # duplicate, and `strato status` shows what is adopted.
        found.sort(key=lambda i: str(i.get("LaunchTime", "")))
        return {"instance_id": found[0]["InstanceId"], "key": key, "adopted": True, **settings.to_dict()}
