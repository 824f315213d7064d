"""The `libcloud` driver through Apache Libcloud's own OpenStack driver (on Mimic) and EC2 driver (on moto)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from drivers.base import DriverError, InstanceSpec
from drivers.libcloud_ import LibcloudDriver
from tests.drivers.contract import DriverContract

pytest.importorskip("libcloud", reason="the libcloud driver needs apache-libcloud (pip install 'strato[libcloud]')")

SECRET = "s3cr3t-" + uuid.uuid4().hex[:8]


def openstack_settings(mimic) -> dict:
    return {"ex_force_auth_url": mimic.url + "/identity", "ex_force_auth_version": "2.0_password",
            "ex_tenant_name": "strato", "ex_force_service_region": "ORD",
            "ex_force_service_name": "cloudServersOpenStack", "ex_force_service_type": "compute", "secure": False}


def ec2_settings(moto) -> dict:
    host, _, port = moto.url.rpartition(":")
    return {"region": "us-east-1", "host": "127.0.0.1", "port": int(port), "secure": False, "signature_version": "4"}


def make_spec(provider: str, settings: dict, size: str, image: str, tmp_path) -> InstanceSpec:
    infra = f"lc-{uuid.uuid4().hex[:6]}"
    return InstanceSpec(key=f"{infra}/vm/0@{uuid.uuid4().hex[:8]}", infra=infra, node="vm", index=0,
                        type="strato.nodes.libcloud.Node",
                        properties={"provider": provider, "settings": settings, "size": size, "image": image,
                                    "metadata": {"team": "ml"}, "wait_timeout": 60},
                        descriptor_dir=str(tmp_path), infra_dir=str(tmp_path), timeout=120)


def _lifecycle(driver: LibcloudDriver, spec: InstanceSpec, native_tags) -> None:
    assert driver.find(spec.key, spec) is None
    handle = driver.create(spec)
    try:
        assert SECRET not in json.dumps(handle)  # credentials never reach the handle (hence state)
        observed = driver.observe(handle)
        assert observed.status == "running" and observed.attributes["node_id"] == handle["node_id"]
        tags = native_tags(handle["node_id"])
        assert tags.get("strato_key") == spec.key and tags.get("team") == "ml"
        found = driver.find(spec.key, spec)  # the handle lost, as after a crash
        assert found is not None and found["node_id"] == handle["node_id"]
        assert driver.create(spec)["node_id"] == handle["node_id"]  # a retried create adopts, never a second node
    finally:
        driver.delete(handle)
    assert driver.find(spec.key, spec) is None
    assert not driver.observe(handle).alive
    driver.delete(handle)


def test_openstack_on_mimic(mimic, monkeypatch, tmp_path):
    monkeypatch.setenv("LIBCLOUD_OPENSTACK_KEY", "strato-user")
    monkeypatch.setenv("LIBCLOUD_OPENSTACK_SECRET", SECRET)
    driver = LibcloudDriver()
    settings = openstack_settings(mimic)
    conn = driver._conn({"provider": "openstack", "settings": settings}, "vm")
    size, image = conn.list_sizes()[0], conn.list_images()[0]

    def native_tags(node_id):
        node = next(n for n in conn.list_nodes() if n.id == node_id)
        return node.extra.get("metadata") or {}

    _lifecycle(driver, make_spec("openstack", settings, size.name, image.id, tmp_path), native_tags)


def test_ec2_on_moto(moto, monkeypatch, tmp_path):
    boto3 = pytest.importorskip("boto3")
    monkeypatch.setenv("LIBCLOUD_KEY", "testing")
    monkeypatch.setenv("LIBCLOUD_SECRET", SECRET)
    ec2 = boto3.client("ec2", endpoint_url=moto.url, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def native_tags(node_id):
        res = ec2.describe_instances(InstanceIds=[node_id])["Reservations"][0]["Instances"][0]
        return {t["Key"]: t["Value"] for t in res.get("Tags", [])}

    _lifecycle(LibcloudDriver(), make_spec("ec2", ec2_settings(moto), "t3.micro", image, tmp_path), native_tags)


def test_credentials_in_the_descriptor_are_refused(tmp_path):
    spec = make_spec("openstack", {"ex_force_auth_url": "http://127.0.0.1:9/identity", "password": "x"}, "s", "i",
                     tmp_path)
    with pytest.raises(DriverError, match="'password' looks like a credential"):
        LibcloudDriver().create(spec)


def test_credentials_file_and_unknown_provider(tmp_path, mimic):
    creds = tmp_path / "creds.yaml"
    creds.write_text(f"key: strato-user\nsecret: {SECRET}\n")
    spec = make_spec("openstack", openstack_settings(mimic), "512MB Standard Instance", "nonexistent-image", tmp_path)
    spec.properties["credentials_file"] = "creds.yaml"
    with pytest.raises(DriverError, match="no image 'nonexistent-image'") as err:
        LibcloudDriver().create(spec)
    assert SECRET not in str(err.value)
    spec.properties["provider"] = "no_such_cloud"
    with pytest.raises(DriverError, match="no compute provider 'no_such_cloud'"):
        LibcloudDriver().create(spec)


def test_occopus_resources_map_onto_libcloud_arguments():
    from drivers.libcloud_ import occopus_properties
    azure = occopus_properties({"provider": "azure_arm", "publisher": "Canonical", "offer": "UbuntuServer",
                                "sku": "18.04-LTS", "version": "latest", "vm_size": "Standard_B1s",
                                "location": "westeurope", "resource_group": "rg1", "tenant_id": "t",
                                "subscription_id": "s", "username": "ubuntu"})
    assert azure["image"] == "Canonical:UbuntuServer:18.04-LTS:latest" and azure["size"] == "Standard_B1s"
    assert azure["settings"] == {"tenant_id": "t", "subscription_id": "s"}
    assert azure["create_args"] == {"ex_resource_group": "rg1", "ex_user_name": "ubuntu"}
    sigma = occopus_properties({"provider": "cloudsigma", "endpoint": "https://zrh.cloudsigma.com/api/2.0",
                                "libdrive_id": "abc-123",
                                "description": {"cpu": 4000, "mem": 2147483648, "vnc_password": "x"}})
    assert sigma["settings"] == {"region": "zrh"} and sigma["image"] == "abc-123" and "endpoint" not in sigma
    assert sigma["size"] == {"cpu": 2, "ram": 2048, "disk": 10} and "description" not in sigma


class TestLibcloudOpenStackContract(DriverContract):
    """The shared driver contract, through Libcloud's OpenStack driver on Mimic."""

    @pytest.fixture
    def driver(self, mimic, monkeypatch):
        monkeypatch.setenv("LIBCLOUD_OPENSTACK_KEY", "strato-user")
        monkeypatch.setenv("LIBCLOUD_OPENSTACK_SECRET", SECRET)
        self.settings = openstack_settings(mimic)
        return LibcloudDriver()

    @pytest.fixture
    def spec(self, driver, tmp_path):
        return make_spec("openstack", self.settings, "512MB Standard Instance", "Ubuntu 14.04 LTS (Trusty Tahr) (PVHVM)",
                         tmp_path)

    def failing_spec(self, spec):
        # Mimic builds the server, then reports it ERROR: the create must remove it again.
        return replace(spec, properties={**spec.properties, "metadata": {"server_error": "1"}})

    def exists(self, handle) -> bool:
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider
        conn = get_driver(Provider.OPENSTACK)("strato-user", SECRET, **self.settings)
        return any(n.id == handle["node_id"] and n.state != "terminated" for n in conn.list_nodes())
