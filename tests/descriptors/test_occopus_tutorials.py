"""Occopus infrastructures shaped like its public tutorials: every resource kind imports to a valid descriptor."""

import os

import pytest
import yaml

from descriptors import load_template
from descriptors.occopus import dump_descriptor, import_occopus
from drivers.base import DriverError, InstanceSpec
from drivers.providers import get_driver

CLOUD_INIT = "#cloud-config\nruncmd:\n  - echo hello\n"

# Resource sections of each kind, written after Occopus's documented keys.
RESOURCES = {
    "ec2": {"type": "ec2", "endpoint": "https://ec2.eu-west-1.amazonaws.com", "regionname": "eu-west-1",
            "image_id": "ami-12345678", "instance_type": "t2.small"},
    "nova": {"type": "nova", "endpoint": "https://keystone.example.org:5000/v3", "project_id": "p1",
             "image_id": "img-1", "flavor_name": "m1.small", "network_id": "net-1"},
    "azure_vm": {"type": "azure_vm", "endpoint": "https://management.azure.com", "resource_group": "rg1",
                 "location": "westeurope", "vm_size": "Standard_B1s", "publisher": "Canonical",
                 "offer": "UbuntuServer", "sku": "18.04-LTS", "version": "latest", "username": "ubuntu",
                 "public_ip_needed": True},
    "azure_aci": {"type": "azure_aci", "endpoint": "https://management.azure.com", "resource_group": "rg1",
                  "location": "westeurope", "memory": 1.5, "cpu_cores": 1, "network_type": "public",
                  "gpu_type": None},
    "cloudsigma": {"type": "cloudsigma", "endpoint": "https://zrh.cloudsigma.com/api/2.0",
                   "libdrive_id": "0ba1b3a0-0000-4000-8000-000000000001",
                   "description": {"cpu": 2000, "mem": 2147483648, "vnc_password": "secret",
                                   "nics": [{"ip_v4_conf": {"conf": "dhcp"}, "model": "virtio"}]}},
    "cloudbroker": {"type": "cloudbroker", "endpoint": "https://cloudsme-prototype.cloudbroker.com",
                    "description": {"deployment_id": "dep-1", "instance_type_id": "it-1", "key_pair": "kp-1",
                                    "opened_port": "22,80"}},
    "docker": {"type": "docker", "endpoint": "unix:///var/run/docker.sock", "origin": "https://hub.docker.com",
               "network_mode": "bridge"},
    "cloudfoo": {"type": "cloudfoo", "endpoint": "https://api.cloudfoo.example", "size": "small"},
}


LIBCLOUD_KINDS = ("azure_vm", "azure_aci", "cloudsigma", "cloudbroker")


@pytest.fixture(params=["libcloud installed", "libcloud missing"])
def libcloud(request, monkeypatch):
    """Both worlds: Strato's libcloud driver registered (a stand-in here: only its name matters to the import and
    to validate) or not."""
    from drivers import providers
    monkeypatch.setattr(providers, "entry_points", lambda group: [])  # installed packages' drivers left out
    table = providers._table()  # the checkout's own setup.cfg
    table.pop("libcloud", None)
    if request.param == "libcloud installed":
        table["libcloud"] = "drivers.noop:NoopDriver"
    monkeypatch.setattr(providers, "_table", lambda: table)
    return request.param == "libcloud installed"


def _write(tmp_path, infra: dict, defs: dict) -> str:
    (tmp_path / "nodes").mkdir(exist_ok=True)
    (tmp_path / "nodes" / "node_definitions.yaml").write_text(yaml.safe_dump(defs))
    (tmp_path / "nodes" / "cloud_init.yaml").write_text(CLOUD_INIT)
    path = tmp_path / "infra.yaml"
    path.write_text(yaml.safe_dump(infra))
    return str(path)


def _node_def(kind: str, **extra) -> dict:
    alt = {"resource": dict(RESOURCES[kind]), "health_check": {"ping": False, "ports": [22]}}
    if kind == "docker":
        alt["contextualisation"] = {"type": "docker", "image": "nginx", "tag": "latest", "env": ["A=1"]}
    else:
        alt["contextualisation"] = {"type": "cloudinit", "context_template": CLOUD_INIT}
    alt.update(extra)
    return alt


def _import_and_validate(tmp_path, infra, defs):
    doc, warnings = import_occopus(_write(tmp_path, infra, defs))
    out = tmp_path / "strato.yaml"
    out.write_text(dump_descriptor(doc))
    return load_template(str(out)), doc, warnings


@pytest.mark.parametrize("kind", sorted(RESOURCES))
def test_every_resource_kind_imports_to_a_valid_descriptor(tmp_path, kind, libcloud):
    infra = {"infra_name": f"{kind}-hello", "nodes": [{"name": "hello", "type": "hello_node",
                                                        "scaling": {"min": 1, "max": 3}}]}
    template, doc, warnings = _import_and_validate(tmp_path, infra, {"node_def:hello_node": [_node_def(kind)]})
    node = doc["topology_template"]["node_templates"]["hello"]
    codes = {w.code for w in warnings}
    if kind in LIBCLOUD_KINDS and libcloud:
        impl = node["properties"]["implementations"][0]
        assert impl["driver"] == "libcloud" and impl["properties"]["provider"]
        assert "OCCOPUS_LIBCLOUD" in codes
    elif kind in LIBCLOUD_KINDS:  # the driver is not there yet: a placeholder keeping the implementation
        assert template.node_templates["hello"].type == "strato.nodes.Placeholder"
        kept = node["metadata"]["occopus.libcloud_implementations"][0]
        assert kept["driver"] == "libcloud" and kept["properties"]["provider"]
        assert "libcloud" in node["properties"]["todo"] and {"OCCOPUS_LIBCLOUD", "OCCOPUS_PLACEHOLDER"} <= codes
    elif kind == "cloudfoo":
        assert template.node_templates["hello"].type == "strato.nodes.Placeholder"
        assert node["metadata"]["occopus.resources"][0]["size"] == "small"
        assert "OCCOPUS_PLACEHOLDER" in codes
    assert template.node_templates["hello"].max_instances == 3


def test_azure_container_instance_keeps_its_image(tmp_path, libcloud):
    infra = {"infra_name": "aci", "nodes": [{"name": "web", "type": "nginx"}]}
    alt = _node_def("azure_aci")
    alt["contextualisation"] = {"type": "docker", "image": "nginx", "tag": "1.25", "ports": [80]}
    template, doc, _ = _import_and_validate(tmp_path, infra, {"node_def:nginx": [alt]})
    node = doc["topology_template"]["node_templates"]["web"]
    impls = node["properties"]["implementations"] if libcloud else node["metadata"]["occopus.libcloud_implementations"]
    impl = impls[0]
    assert impl["driver"] == "libcloud" and impl["properties"]["image"] == "nginx:1.25"
    assert impl["properties"]["provider"] == "azure_aci" and impl["properties"]["ports"] == [80]


def test_placeholder_refuses_to_build_saying_what_to_add(tmp_path):
    infra = {"infra_name": "foo", "nodes": [{"name": "n", "type": "t"}]}
    template, doc, _ = _import_and_validate(tmp_path, infra, {"node_def:t": [_node_def("cloudfoo")]})
    assert template.driver_name("n") == "placeholder"
    props = doc["topology_template"]["node_templates"]["n"]["properties"]
    spec = InstanceSpec(key="k", infra="foo", node="n", index=0, type="strato.nodes.Placeholder", properties=props)
    with pytest.raises(DriverError) as info:
        get_driver("placeholder").create(spec)
    assert "cloudfoo" in str(info.value) and "implementations" in str(info.value) and not info.value.retryable


def test_mixed_alternatives_keep_the_supported_ones(tmp_path, libcloud):
    infra = {"infra_name": "mixed", "nodes": [{"name": "n", "type": "t"}]}
    defs = {"node_def:t": [_node_def("cloudfoo"), _node_def("cloudsigma"), _node_def("nova")]}
    template, doc, warnings = _import_and_validate(tmp_path, infra, defs)
    impls = doc["topology_template"]["node_templates"]["n"]["properties"]["implementations"]
    assert [i["driver"] for i in impls] == (["libcloud", "openstack"] if libcloud else ["openstack"])
    assert any(w.code == "OCCOPUS_UNSUPPORTED" and "cloudfoo" in w.message for w in warnings)


def test_chef_wordpress_connection_mappings_and_cookbooks(tmp_path):
    chef = {"type": "chef", "endpoint": "https://chef.example.org",
            "run_list": ["recipe[wordpress::default]", "recipe[database-setup]", "role[web]"]}
    infra = {"infra_name": "chef-wordpress",
             "nodes": [{"name": "db", "type": "mysql_server"}, {"name": "wp", "type": "wordpress"}],
             "dependencies": [{"connection": ["wp", "db"],
                               "mappings": [{"attributes": ["mysql_root_password", "db_password"]},
                                            {"attributes": ["private_ip", "db_host"]}]}]}
    defs = {"node_def:mysql_server": [_node_def("ec2", config_management=dict(chef))],
            "node_def:wordpress": [_node_def("nova", config_management=dict(chef))]}
    doc, warnings = import_occopus(_write(tmp_path, infra, defs))
    variables = doc["topology_template"]["node_templates"]["wp"]["properties"]["cloud_init_variables"]
    assert variables["db_password"] == {"get_attribute": ["db", "mysql_root_password"]}
    assert variables["db_host"] == {"get_attribute": ["db", "private_address"]}  # Occopus's name for it
    out = tmp_path / "strato.yaml"
    out.write_text(dump_descriptor(doc))
    from descriptors import DescriptorError
    with pytest.raises(DescriptorError) as info:  # chef sets it, and Strato does not run chef: no build would get it
        load_template(str(out))
    assert [(d.code, d.path) for d in info.value.diagnostics if d.severity == "error"] == [
        ("FUNCTION_UNKNOWN_ATTRIBUTE", "topology_template.node_templates.wp.properties.cloud_init_variables.db_password")]
    del variables["db_password"]
    out.write_text(dump_descriptor(doc))
    assert load_template(str(out)).node_templates["wp"].dependencies == ["db"]
    chef_warnings = [w.message for w in warnings if "chef" in w.message]
    assert chef_warnings and all("database-setup, web, wordpress" in m for m in chef_warnings)


def test_bad_mapping_is_an_error(tmp_path):
    infra = {"infra_name": "x", "nodes": [{"name": "a", "type": "t"}, {"name": "b", "type": "t"}],
             "dependencies": [{"connection": ["a", "b"], "mappings": [{"attributes": ["only-one"]}]}]}
    from descriptors import DescriptorError
    with pytest.raises(DescriptorError) as info:
        import_occopus(_write(tmp_path, infra, {"node_def:t": [_node_def("ec2")]}))
    assert [d.code for d in info.value.diagnostics if d.severity == "error"] == ["OCCOPUS_BAD_MAPPING"]


def test_docker_connection_mapping_goes_to_the_environment(tmp_path):
    infra = {"infra_name": "d", "nodes": [{"name": "web", "type": "w"}, {"name": "db", "type": "w"}],
             "dependencies": [{"connection": ["web", "db"], "mappings": [{"attributes": ["host", "DB_HOST"]}]}]}
    template, _, _ = _import_and_validate(tmp_path, infra, {"node_def:w": [_node_def("docker")]})
    assert template.node_templates["web"].properties["env"]["DB_HOST"] == {"get_attribute": ["db", "host"]}
    assert os.path.exists(tmp_path / "strato.yaml")


def test_docker_resource_maps_onto_the_docker_driver(tmp_path):
    infra = {"infra_name": "d", "nodes": [{"name": "web", "type": "w"}]}
    definition = _node_def("docker")
    definition["resource"].update({"endpoint": "tcp://127.0.0.1:2375", "network_mode": "host"})
    template, _, _ = _import_and_validate(tmp_path, infra, {"node_def:w": [definition]})
    assert template.driver_name("web") == "docker"
    props = template.node_templates["web"].properties
    assert props["docker_host"] == "tcp://127.0.0.1:2375" and props["network"] == "host"
