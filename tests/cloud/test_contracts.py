"""The shared driver contract run by every cloud driver against its emulator: EC2/SageMaker/Lambda on moto, Nova on Mimic,
and the composite placement driver over real local processes."""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace

import boto3
import pytest

from drivers.aws.ec2 import Ec2Driver
from drivers.aws.lambda_ import LambdaDriver
from drivers.aws.sagemaker import SageMakerDriver
from drivers.base import InstanceSpec
from drivers.local import processes_with_key
from drivers.openstack import OpenStackDriver
from drivers.placement import PlacementDriver
from helpers import nova_servers
from tests.drivers.contract import DriverContract

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MIMIC_IMAGE = "Ubuntu 14.04 LTS (Trusty Tahr) (PVHVM)"
MIMIC_FLAVOR = "1GB Standard Instance"


def make_spec(tmp_path, node: str, **props) -> InstanceSpec:
    infra = f"c{uuid.uuid4().hex[:8]}"
    return InstanceSpec(key=f"{infra}/{node}/0@{uuid.uuid4().hex[:6]}", infra=infra, node=node, index=0,
                        type="test", properties=props, descriptor_dir=str(tmp_path),
                        infra_dir=str(tmp_path / "infra"), timeout=60)


def _prepared(driver, spec):
    """The spec with the node's attributes prepared (an IAM role), released afterwards."""
    attrs = driver.prepare_node(spec)
    yield replace(spec, node_attributes=attrs)
    driver.release_node(attrs)


class TestEc2Contract(DriverContract):
    @pytest.fixture
    def driver(self, cloud_env):
        return Ec2Driver()

    @pytest.fixture
    def spec(self, tmp_path):
        return make_spec(tmp_path, "vm", image="ami-04681a1dbd79675a5", instance_type="t3.micro", ports=[8080])

    def exists(self, handle) -> bool:
        reply = boto3.client("ec2").describe_instances(InstanceIds=[handle["instance_id"]])
        states = [i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]]
        return any(s in ("pending", "running") for s in states)

    def node_resources(self, attrs):
        groups = boto3.client("ec2").describe_security_groups(
            Filters=[{"Name": "group-id", "Values": [attrs["security_group_id"]]}])["SecurityGroups"]
        return bool(groups)


class TestSageMakerContract(DriverContract):
    @pytest.fixture
    def driver(self, cloud_env):
        return SageMakerDriver()

    @pytest.fixture
    def spec(self, driver, tmp_path):
        yield from _prepared(driver, make_spec(tmp_path, "endpoint", image="123.dkr.ecr.us-east-1.amazonaws.com/m:1",
                                               instance_type="ml.m5.large", instance_count=1))

    def exists(self, handle) -> bool:
        names = [e["EndpointName"] for e in boto3.client("sagemaker").list_endpoints()["Endpoints"]]
        return handle["endpoint_name"] in names

    def updated_spec(self, spec):
        return replace(spec, properties={**spec.properties, "instance_count": 2})

    def check_updated(self, handle, spec):
        variant = boto3.client("sagemaker").describe_endpoint(
            EndpointName=handle["endpoint_name"])["ProductionVariants"][0]
        assert variant.get("DesiredInstanceCount", variant.get("CurrentInstanceCount")) == 2

    def node_resources(self, attrs):
        try:
            boto3.client("iam").get_role(RoleName=attrs["role_name"])
            return True
        except boto3.client("iam").exceptions.NoSuchEntityException:
            return False


class TestLambdaContract(TestSageMakerContract):
    @pytest.fixture
    def driver(self, cloud_env):
        return LambdaDriver()

    @pytest.fixture
    def spec(self, driver, tmp_path):
        (tmp_path / "handler.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
        yield from _prepared(driver, make_spec(tmp_path, "fn", code="handler.py", memory_mb=256))

    def exists(self, handle) -> bool:
        names = [f["FunctionName"] for f in boto3.client("lambda").list_functions()["Functions"]]
        return handle["function_name"] in names

    def updated_spec(self, spec):
        return None

    def failing_spec(self, spec):
        return replace(spec, properties={**spec.properties, "code": "no-such-file.py"})


class TestOpenStackContract(DriverContract):
    @pytest.fixture
    def driver(self, cloud_env):
        return OpenStackDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        return make_spec(tmp_path, "server", flavor=MIMIC_FLAVOR, image=MIMIC_IMAGE, wait_timeout=30)

    def exists(self, handle) -> bool:
        infra = handle["key"].split("/")[0]
        return any(s.id == handle["server_id"] for s in nova_servers(infra))

    def failing_spec(self, spec):
        # Mimic builds the server, then reports it ERROR: the create must remove it again.
        return replace(spec, properties={**spec.properties, "metadata": {"server_error": "1"}})


SERVER = ("import http.server, os\n"
          "http.server.ThreadingHTTPServer(('127.0.0.1', int(os.environ['STRATO_PORT'])), "
          "http.server.SimpleHTTPRequestHandler).serve_forever()\n")


class TestPlacementContract(DriverContract):
    """The composite over real local processes: the first candidate refuses (its command cannot start)."""

    @pytest.fixture
    def driver(self):
        return PlacementDriver()

    @pytest.fixture
    def spec(self, tmp_path):
        good = {"command": [sys.executable, "-c", SERVER], "port": "auto", "shared_port": "auto",
                "start_timeout": 20}
        bad = {"command": ["/nonexistent/strato-test-binary"]}
        return make_spec(tmp_path, "web", candidates=[
            {"label": "0:local", "driver": "local", "properties": bad, "cost_per_hour": 0.0},
            {"label": "1:local", "driver": "local", "properties": good, "cost_per_hour": 1.0}],
            report={"policy": "order", "order": ["0:local", "1:local"], "excluded": [], "estimates": {}})

    def exists(self, handle) -> bool:
        return handle["backend"] == "local" and bool(processes_with_key(handle["handle"]["key"]))

    def test_handle_names_the_backend_and_the_refusal(self, driver, spec):
        handle = driver.create(spec)
        try:
            assert handle["backend"] == "local" and handle["placement"]["implementation"] == "1:local"
            refused = driver.observe(handle).attributes["placement"]["refused"]
            assert refused[0]["implementation"] == "0:local" and "cannot start" in refused[0]["error"]
        finally:
            driver.delete(handle)
