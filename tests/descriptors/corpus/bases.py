"""Hand-written TOSCA templates, one per construct, each with the verdict a conforming parser gives.

generate.py writes them (and their variants across TOSCA versions) to valid/ and invalid/.
Every case is written for this corpus; the constructs follow the TOSCA Simple Profile 1.0-1.3,
its NFV profile and the shapes used by public TOSCA tools' examples. A case is
(name, verdict, text, versions): versions lists the tosca_definitions_version values the case
is written out with (one file each); {V} in the text is replaced by the version.
"""

ALL = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")
V13 = ("tosca_simple_yaml_1_3",)
V12_13 = ("tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")
NFV = ("tosca_simple_profile_for_nfv_1_0_0",)

# files that corpus cases import (written to lib/, outside valid/ and invalid/)
LIBRARIES = {
    "lib/common-types.yaml": """tosca_definitions_version: tosca_simple_yaml_1_3
description: shared node and data types
data_types:
  corp.datatypes.Endpoint:
    derived_from: tosca.datatypes.Root
    properties:
      host: {type: string}
      port: {type: integer, required: false, default: 80}
node_types:
  corp.nodes.App:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      version: {type: string, required: false, default: "1.0"}
  corp.nodes.Rsyslog:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      port: {type: integer, default: 514}
""",
    "lib/nested/more-types.yaml": """tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - ../common-types.yaml
node_types:
  corp.nodes.Worker:
    derived_from: corp.nodes.App
""",
    # imports a path that exists only relative to the root template's directory (valid/ or invalid/)
    "lib/nested/uses-root.yaml": """tosca_definitions_version: tosca_simple_yaml_1_3
imports:
  - ../lib/common-types.yaml
node_types:
  corp.nodes.Collector:
    derived_from: corp.nodes.Rsyslog
""",
    "lib/repo/remote-types.yaml": """tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  corp.nodes.FromRepo:
    derived_from: tosca.nodes.Root
""",
}

CASES = [
    # --- type libraries (no topology_template) ----------------------------------------------------
    ("library_node_types", "valid", """tosca_definitions_version: {V}
description: a library of node types only
node_types:
  lib.nodes.Web:
    derived_from: tosca.nodes.WebServer
    properties:
      port: {type: integer, default: 8080}
  lib.nodes.App:
    derived_from: tosca.nodes.WebApplication
""", ALL),
    ("library_all_kinds", "valid", """tosca_definitions_version: {V}
data_types:
  lib.datatypes.Limits:
    derived_from: tosca.datatypes.Root
    properties:
      cpu: {type: float}
      memory: {type: scalar-unit.size, required: false}
capability_types:
  lib.capabilities.Queue:
    derived_from: tosca.capabilities.Endpoint
relationship_types:
  lib.relationships.Publishes:
    derived_from: tosca.relationships.ConnectsTo
    valid_target_types: [lib.capabilities.Queue]
policy_types:
  lib.policies.Quota:
    derived_from: tosca.policies.Root
    properties:
      limits: {type: lib.datatypes.Limits}
group_types:
  lib.groups.Tier:
    derived_from: tosca.groups.Root
artifact_types:
  lib.artifacts.Helm:
    derived_from: tosca.artifacts.Deployment
    file_ext: [tgz]
""", ALL),
    ("library_imports_only", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/common-types.yaml
""", V13),
    ("library_interface_type_legacy", "valid", """tosca_definitions_version: {V}
interface_types:
  lib.interfaces.Backup:
    derived_from: tosca.interfaces.Root
    backup:
      description: take a backup
    restore:
      description: restore the latest backup
node_types:
  lib.nodes.Db:
    derived_from: tosca.nodes.Database
    interfaces:
      Backup:
        type: lib.interfaces.Backup
""", ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2")),
    ("library_interface_type_operations", "valid", """tosca_definitions_version: {V}
interface_types:
  lib.interfaces.Scale:
    derived_from: tosca.interfaces.Root
    operations:
      scale_out:
        description: add one instance
      scale_in: {}
""", V13),
    ("library_unknown_parent", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.Web:
    derived_from: tosca.nodes.WebServerr
""", ALL),
    ("library_type_cycle", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: lib.nodes.B
  lib.nodes.B:
    derived_from: lib.nodes.A
""", ALL),
    ("library_bad_property_type", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
    properties:
      size: {type: integr}
""", ALL),
    ("library_bad_default", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
    properties:
      replicas: {type: integer, default: many}
""", ALL),
    ("library_unknown_key", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
    propertiess:
      a: {type: string}
""", ALL),
    ("library_unknown_capability_type", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
    capabilities:
      queue: {type: lib.capabilities.Nope}
""", ALL),
    ("library_bad_version", "invalid", """tosca_definitions_version: tosca_simple_yaml_9_9
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
""", V13),
    ("library_duplicate_key", "invalid", """tosca_definitions_version: {V}
node_types:
  lib.nodes.A:
    derived_from: tosca.nodes.Root
  lib.nodes.A:
    derived_from: tosca.nodes.Compute
""", ALL),

    # --- Simple Profile types: containers, networking, artifacts, policies -------------------------
    ("docker_application", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    runtime:
      type: tosca.nodes.Container.Runtime
      requirements:
        - host: vm
    vm:
      type: tosca.nodes.Compute
    web:
      type: tosca.nodes.Container.Application.Docker
      artifacts:
        image:
          file: nginx:1.25
          type: tosca.artifacts.Deployment.Image.Container.Docker
      requirements:
        - host: {node: runtime, capability: tosca.capabilities.Container}
""", V12_13),
    ("docker_capability_properties", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.DockerHost:
    derived_from: tosca.nodes.Container.Runtime
    capabilities:
      host: tosca.capabilities.Container.Docker
topology_template:
  node_templates:
    engine:
      type: my.nodes.DockerHost
      capabilities:
        host:
          properties:
            publish_all: true
            volumes: [/data]
            publish_ports:
              - {protocol: tcp, target: 80, source: 8080}
      requirements:
        - host: vm
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.Container.Application.Docker
      requirements:
        - host: engine
""", V12_13),
    ("docker_bad_capability_property", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.DockerHost:
    derived_from: tosca.nodes.Container.Runtime
    capabilities:
      host: tosca.capabilities.Container.Docker
topology_template:
  node_templates:
    engine:
      type: my.nodes.DockerHost
      capabilities:
        host:
          properties:
            publish_all: sometimes
""", V12_13),
    ("network_port_binding", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties: {num_cpus: 1, mem_size: 2 GB}
    net:
      type: tosca.nodes.network.Network
      properties:
        network_name: private
        cidr: 10.0.0.0/24
        ip_version: 4
    port:
      type: tosca.nodes.network.Port
      properties:
        order: 0
      requirements:
        - binding: server
        - link: net
""", ALL),
    ("network_bad_ip_version", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    net:
      type: tosca.nodes.network.Network
      properties:
        ip_version: 5
""", ALL),
    ("network_floating_ip", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    net: {type: tosca.nodes.network.Network, properties: {network_name: public}}
    fip:
      type: tosca.nodes.network.FloatingIP
      properties:
        floating_network: public
      requirements:
        - link: net
""", V13),
    ("artifact_types_vm_images", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      artifacts:
        disk:
          file: images/ubuntu.qcow2
          type: tosca.artifacts.Deployment.Image.VM.QCOW2
        installer:
          file: images/setup.iso
          type: tosca.artifacts.Deployment.Image.VM.ISO
""", V12_13),
    ("artifact_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      artifacts:
        disk:
          file: images/ubuntu.qcow2
          type: tosca.artifacts.Deployment.Image.VM.VMDK
""", V12_13),
    ("monitoring_policy", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - watch_cpu:
        type: tosca.policies.Monitoring
        targets: [vm]
""", V13),
    ("scaling_policy_properties", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - scale_vm:
        type: tosca.policies.Scaling
        targets: [vm]
        properties:
          min_instances: 1
          max_instances: 4
          default_instances: 2
          increment: 1
          cooldown: 60 s
""", V13),
    ("scaling_policy_bad_property", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - scale_vm:
        type: tosca.policies.Scaling
        targets: [vm]
        properties:
          min_instances: some
""", V13),
    ("policy_empty_targets_properties", "valid", """tosca_definitions_version: {V}
policy_types:
  my.policies.Audit:
    derived_from: tosca.policies.Root
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  groups:
    servers: {type: tosca.groups.Root, members: [vm]}
  policies:
    - audit:
        type: my.policies.Audit
        targets: [servers]
        properties:
    - audit_all:
        type: my.policies.Audit
        targets:
""", V13),
    ("policy_unknown_target", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - place:
        type: tosca.policies.Placement
        targets: [vn]
""", V13),
    ("policy_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - place:
        type: tosca.policies.Placemen
        targets: [vm]
""", V13),
    ("policy_wrong_target_type", "invalid", """tosca_definitions_version: {V}
policy_types:
  my.policies.DbOnly:
    derived_from: tosca.policies.Root
    targets: [tosca.nodes.Database]
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - p:
        type: my.policies.DbOnly
        targets: [vm]
""", V13),
    ("policy_reservation", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - reserve:
        type: tosca.policies.Reservation
        targets: [vm]
""", V13),

    # --- NFV profile ----------------------------------------------------------------------------------
    ("nfv_vnf_vdu_cp_vl", "valid", """tosca_definitions_version: {V}
description: a VNF with one VDU on one virtual link
topology_template:
  node_templates:
    vnf:
      type: tosca.nodes.nfv.VNF
      properties:
        id: vnf-1
        vendor: example
        version: 1.0
      requirements:
        - virtualLink: vl
    vdu:
      type: tosca.nodes.nfv.VDU
      capabilities:
        host:
          properties: {num_cpus: 2, mem_size: 2 GB, disk_size: 10 GB}
        os:
          properties: {architecture: x86_64, type: linux, distribution: ubuntu}
    cp:
      type: tosca.nodes.nfv.CP
      properties:
        type: vPort
      requirements:
        - virtualLink: vl
        - virtualBinding: vdu
    vl:
      type: tosca.nodes.nfv.VL
      properties:
        vendor: example
        cidr: 192.168.1.0/24
""", NFV),
    ("nfv_elan_and_ha", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu1:
      type: tosca.nodes.nfv.VDU
    vdu2:
      type: tosca.nodes.nfv.VDU
      requirements:
        - high_availability: vdu1
    lan:
      type: tosca.nodes.nfv.VL.ELAN
      properties: {vendor: example}
    cp1:
      type: tosca.nodes.nfv.CP
      requirements:
        - virtualLink: lan
        - virtualBinding: vdu1
""", NFV),
    ("nfv_vnffg", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu: {type: tosca.nodes.nfv.VDU}
    vl: {type: tosca.nodes.nfv.VL, properties: {vendor: acme}}
    cp:
      type: tosca.nodes.nfv.CP
      requirements:
        - virtualLink: vl
        - virtualBinding: vdu
    path:
      type: tosca.nodes.nfv.FP
      properties:
        policy: round-robin
  groups:
    graph:
      type: tosca.groups.nfv.VNFFG
      properties:
        vendor: acme
        version: "1.0"
        number_of_endpoints: 1
        dependent_virtual_link: [vl]
        connection_point: [cp]
        constituent_vnfs: [vnf1]
      members: [path]
""", NFV),
    ("nfv_cp_wrong_link", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu: {type: tosca.nodes.nfv.VDU}
    cp:
      type: tosca.nodes.nfv.CP
      requirements:
        - virtualLink: vdu
        - virtualBinding: vdu
""", NFV),
    ("nfv_vnffg_missing_property", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    path: {type: tosca.nodes.nfv.FP}
  groups:
    graph:
      type: tosca.groups.nfv.VNFFG
      properties:
        vendor: acme
      members: [path]
""", NFV),
    ("nfv_vnffg_bad_member", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu: {type: tosca.nodes.nfv.VDU}
  groups:
    graph:
      type: tosca.groups.nfv.VNFFG
      properties:
        vendor: acme
        version: "1.0"
        number_of_endpoints: 1
        dependent_virtual_link: []
        connection_point: []
        constituent_vnfs: []
      members: [vdu]
""", NFV),
    ("nfv_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu: {type: tosca.nodes.nfv.VDUX}
""", NFV),
    ("nfv_bad_version_property", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vnf:
      type: tosca.nodes.nfv.VNF
      properties:
        version: [1, 0]
""", NFV),

    # --- imports ---------------------------------------------------------------------------------------
    ("import_parent_directory", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/common-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: corp.nodes.App
      requirements:
        - host: vm
""", V12_13),
    ("import_nested_relative", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/nested/more-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    worker:
      type: corp.nodes.Worker
      requirements:
        - host: vm
""", V13),
    ("import_namespace_prefix", "valid", """tosca_definitions_version: {V}
imports:
  - file: ../lib/common-types.yaml
    namespace_prefix: test_namespace_prefix
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    syslog:
      type: test_namespace_prefix.corp.nodes.Rsyslog
      requirements:
        - host: vm
""", V12_13),
    ("import_legacy_named", "valid", """tosca_definitions_version: {V}
imports:
  - common: ../lib/common-types.yaml
  - more:
      file: ../lib/nested/more-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    w:
      type: corp.nodes.Worker
      requirements:
        - host: vm
""", ("tosca_simple_yaml_1_0",)),
    ("import_repository_local", "valid", """tosca_definitions_version: {V}
repositories:
  types_repo:
    description: a directory of shared types
    url: ../lib/repo
imports:
  - file: remote-types.yaml
    repository: types_repo
topology_template:
  node_templates:
    x: {type: corp.nodes.FromRepo}
""", V12_13),
    ("import_root_directory_fallback", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/nested/uses-root.yaml
topology_template:
  node_templates:
    a: {type: corp.nodes.Collector, requirements: [host: vm]}
    vm: {type: tosca.nodes.Compute}
""", V13),
    ("import_data_type_input", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/common-types.yaml
topology_template:
  inputs:
    endpoint:
      type: corp.datatypes.Endpoint
      default: {host: example.org}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", V13),
    ("import_missing_file", "invalid", """tosca_definitions_version: {V}
imports:
  - ../lib/no-such-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", V12_13),
    ("import_unknown_repository", "invalid", """tosca_definitions_version: {V}
imports:
  - file: remote-types.yaml
    repository: nowhere
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", V12_13),
    ("import_prefix_unprefixed_use", "invalid", """tosca_definitions_version: {V}
imports:
  - file: ../lib/common-types.yaml
    namespace_prefix: ns
topology_template:
  node_templates:
    syslog: {type: ns.corp.nodes.Rsyslo}
""", V13),
    ("import_not_a_list", "invalid", """tosca_definitions_version: {V}
imports: ../lib/common-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", V13),

    # --- normative properties and values -----------------------------------------------------------
    ("database_without_name", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    dbms:
      type: tosca.nodes.DBMS
      properties: {root_password: secret, port: 3306}
      requirements: [host: vm]
    db:
      type: tosca.nodes.Database
      requirements: [host: dbms]
""", ALL),
    ("block_storage_sizes", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    disk:
      type: tosca.nodes.Storage.BlockStorage
      properties:
        size: 10 GB
    vm2:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: disk
            relationship:
              type: tosca.relationships.AttachesTo
              properties:
                location: /mnt/data
""", ALL),
    ("block_storage_too_small", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    disk:
      type: tosca.nodes.Storage.BlockStorage
      properties:
        size: 0 MB
""", ALL),
    ("compute_bad_mem_unit", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            mem_size: 4 GX
""", ALL),
    ("compute_bad_os_value", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        os:
          properties:
            architecture: 64
            type: linux
            distribution: [ubuntu]
""", ALL),
    ("unknown_property", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    ws:
      type: tosca.nodes.WebServer
      properties:
        port_number: 80
      requirements: [host: vm]
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("custom_required_property_missing", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.App:
    derived_from: tosca.nodes.Root
    properties:
      image: {type: string}
topology_template:
  node_templates:
    app: {type: my.nodes.App}
""", ALL),
    ("yaml_type_names", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.App:
    derived_from: tosca.nodes.Root
    properties:
      replicas: {type: int, default: 1}
      name: {type: str, required: false}
      debug: {type: bool, default: false}
topology_template:
  inputs:
    count: {type: int, default: 3}
  node_templates:
    app:
      type: my.nodes.App
      properties:
        replicas: {get_input: count}
        name: web
""", V13),
    ("yaml_tag_type_names", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.App:
    derived_from: tosca.nodes.Root
    properties:
      replicas: {type: "tag:yaml.org,2002:int", default: 1}
      ratio: {type: "tag:yaml.org,2002:float", required: false}
topology_template:
  node_templates:
    app:
      type: my.nodes.App
      properties:
        ratio: 0.5
""", V13),
    ("yaml_type_name_bad_value", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.App:
    derived_from: tosca.nodes.Root
    properties:
      replicas: {type: int}
topology_template:
  node_templates:
    app:
      type: my.nodes.App
      properties:
        replicas: three
""", V13),
    ("constraints_all_kinds", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Svc:
    derived_from: tosca.nodes.Root
    properties:
      port: {type: integer, constraints: [{in_range: [1, 65535]}]}
      tier: {type: string, constraints: [{valid_values: [gold, silver]}]}
      name: {type: string, constraints: [{min_length: 2}, {max_length: 20}, {pattern: "^[a-z]+$"}]}
      weight: {type: float, constraints: [{greater_than: 0.0}, {less_or_equal: 1.0}]}
topology_template:
  node_templates:
    svc:
      type: my.nodes.Svc
      properties: {port: 8080, tier: gold, name: web, weight: 0.5}
""", ALL),
    ("constraint_violated", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Svc:
    derived_from: tosca.nodes.Root
    properties:
      port: {type: integer, constraints: [{in_range: [1, 65535]}]}
topology_template:
  node_templates:
    svc:
      type: my.nodes.Svc
      properties: {port: 70000}
""", ALL),
    ("valid_values_violated", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Svc:
    derived_from: tosca.nodes.Root
    properties:
      tier: {type: string, constraints: [{valid_values: [gold, silver]}]}
topology_template:
  node_templates:
    svc:
      type: my.nodes.Svc
      properties: {tier: bronze}
""", ALL),
    ("data_type_nested_values", "valid", """tosca_definitions_version: {V}
data_types:
  my.datatypes.Rule:
    derived_from: tosca.datatypes.Root
    properties:
      port: {type: integer}
      cidr: {type: string, default: 0.0.0.0/0}
node_types:
  my.nodes.Firewall:
    derived_from: tosca.nodes.Root
    properties:
      rules: {type: list, entry_schema: {type: my.datatypes.Rule}}
      labels: {type: map, required: false, entry_schema: {type: string}}
topology_template:
  node_templates:
    fw:
      type: my.nodes.Firewall
      properties:
        rules:
          - {port: 22}
          - {port: 443, cidr: 10.0.0.0/8}
        labels: {team: web}
""", ALL),
    ("data_type_missing_field", "invalid", """tosca_definitions_version: {V}
data_types:
  my.datatypes.Rule:
    derived_from: tosca.datatypes.Root
    properties:
      port: {type: integer}
node_types:
  my.nodes.Firewall:
    derived_from: tosca.nodes.Root
    properties:
      rules: {type: list, entry_schema: {type: my.datatypes.Rule}}
topology_template:
  node_templates:
    fw:
      type: my.nodes.Firewall
      properties:
        rules:
          - {cidr: 10.0.0.0/8}
""", ALL),
    ("data_type_unknown_field", "invalid", """tosca_definitions_version: {V}
data_types:
  my.datatypes.Rule:
    derived_from: tosca.datatypes.Root
    properties:
      port: {type: integer}
node_types:
  my.nodes.Firewall:
    derived_from: tosca.nodes.Root
    properties:
      rule: {type: my.datatypes.Rule}
topology_template:
  node_templates:
    fw:
      type: my.nodes.Firewall
      properties:
        rule: {port: 22, protocol: tcp}
""", ALL),
    ("entry_schema_wrong", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.A:
    derived_from: tosca.nodes.Root
    properties:
      ports: {type: list, entry_schema: {type: integer}}
topology_template:
  node_templates:
    a:
      type: my.nodes.A
      properties:
        ports: [80, http]
""", ALL),

    # --- inputs ------------------------------------------------------------------------------------------
    ("input_data_type_same_file", "valid", """tosca_definitions_version: {V}
data_types:
  my.datatypes.Credentials:
    derived_from: tosca.datatypes.Root
    properties:
      user: {type: string}
      password: {type: string, required: false}
topology_template:
  inputs:
    creds:
      type: my.datatypes.Credentials
      default: {user: admin}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("input_data_type_bad_default", "invalid", """tosca_definitions_version: {V}
data_types:
  my.datatypes.Credentials:
    derived_from: tosca.datatypes.Root
    properties:
      user: {type: string}
topology_template:
  inputs:
    creds:
      type: my.datatypes.Credentials
      default: {password: x}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("input_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    n: {type: intger}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("input_constraints_default_violates", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    cpus:
      type: integer
      default: 16
      constraints:
        - valid_values: [1, 2, 4, 8]
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("inputs_feed_properties", "valid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    cpus:
      type: integer
      default: 2
      constraints:
        - valid_values: [1, 2, 4, 8]
    mem: {type: scalar-unit.size, default: 4 GB}
    image: {type: string, default: ubuntu}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: {get_input: cpus}
            mem_size: {get_input: mem}
        os:
          properties:
            distribution: {get_input: image}
  outputs:
    address:
      description: the machine's address
      value: {get_attribute: [vm, private_address]}
""", ALL),
    ("input_type_mismatch", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    cpus: {type: string, default: two}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: {get_input: cpus}
""", ALL),

    # --- requirements ------------------------------------------------------------------------------------
    ("requirement_other_node_type_with_capability", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.AppServer:
    derived_from: tosca.nodes.SoftwareComponent
    capabilities:
      host: tosca.capabilities.Container
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    appserver:
      type: my.nodes.AppServer
      requirements: [host: vm]
    app:
      type: tosca.nodes.WebApplication
      requirements:
        - host:
            node: appserver
            capability: tosca.capabilities.Container
""", ALL),
    ("requirement_undeclared_by_type", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    dbms: {type: tosca.nodes.DBMS, requirements: [host: vm]}
    db:
      type: tosca.nodes.Database
      properties: {name: shop}
      requirements: [host: dbms]
    web:
      type: tosca.nodes.WebServer
      requirements:
        - host: vm
        - database_endpoint:
            node: db
            capability: tosca.capabilities.Endpoint.Database
            relationship: tosca.relationships.ConnectsTo
""", ALL),
    ("requirement_by_node_type", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements:
        - host: tosca.nodes.Compute
""", ALL),
    ("requirement_node_filter", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    small:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1}}
    big:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 8}}
    sw:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host:
            node_filter:
              capabilities:
                - host:
                    properties:
                      - num_cpus: {greater_or_equal: 4}
""", V12_13),
    # a node_filter no template matches asks the orchestrator for a node (TOSCA 3.8.2): a warning, and the build refuses
    ("requirement_node_filter_selects_nothing", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    small:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1}}
    sw:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host:
            node_filter:
              capabilities:
                - host:
                    properties:
                      - num_cpus: {greater_or_equal: 4}
""", V12_13),
    ("requirement_unknown_node", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements:
        - host: vn
""", ALL),
    ("requirement_typo_name", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements:
        - hosts: vm
""", ALL),
    ("requirement_target_lacks_capability", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    disk: {type: tosca.nodes.Storage.BlockStorage, properties: {size: 1 GB}}
    ws:
      type: tosca.nodes.WebServer
      requirements:
        - host: disk
""", ALL),
    ("requirement_self", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      requirements:
        - dependency: vm
""", ALL),
    ("requirement_too_many", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    a: {type: tosca.nodes.Compute}
    b: {type: tosca.nodes.Compute}
    sw:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host: a
        - host: b
""", ALL),
    ("requirement_occurrences_unmet", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Client:
    derived_from: tosca.nodes.Root
    requirements:
      - server:
          capability: tosca.capabilities.Endpoint
          relationship: tosca.relationships.ConnectsTo
          occurrences: [1, 2]
topology_template:
  node_templates:
    client: {type: my.nodes.Client}
""", ALL),
    ("requirement_occurrences_met", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Client:
    derived_from: tosca.nodes.Root
    requirements:
      - server:
          capability: tosca.capabilities.Endpoint
          relationship: tosca.relationships.ConnectsTo
          occurrences: [1, 2]
  my.nodes.Server:
    derived_from: tosca.nodes.Root
    capabilities:
      api: tosca.capabilities.Endpoint
topology_template:
  node_templates:
    server: {type: my.nodes.Server}
    client:
      type: my.nodes.Client
      requirements:
        - server: server
""", ALL),
    ("relationship_template_used", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    disk: {type: tosca.nodes.Storage.BlockStorage, properties: {size: 5 GB}}
    vm2:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: disk
            relationship: attach
  relationship_templates:
    attach:
      type: tosca.relationships.AttachesTo
      properties:
        location: /data
""", ALL),
    ("relationship_wrong_target", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    sw:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host:
            node: vm
            relationship: tosca.relationships.AttachesTo
""", ALL),
    ("relationship_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    sw:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host:
            node: vm
            relationship: tosca.relationships.HostedAt
""", ALL),
    ("custom_relationship_type", "valid", """tosca_definitions_version: {V}
capability_types:
  my.capabilities.Queue:
    derived_from: tosca.capabilities.Endpoint
relationship_types:
  my.relationships.Publishes:
    derived_from: tosca.relationships.ConnectsTo
    valid_target_types: [my.capabilities.Queue]
node_types:
  my.nodes.Broker:
    derived_from: tosca.nodes.Root
    capabilities:
      queue: my.capabilities.Queue
  my.nodes.Producer:
    derived_from: tosca.nodes.Root
    requirements:
      - queue:
          capability: my.capabilities.Queue
          relationship: my.relationships.Publishes
topology_template:
  node_templates:
    broker: {type: my.nodes.Broker}
    producer:
      type: my.nodes.Producer
      requirements:
        - queue: broker
""", ALL),

    # --- interfaces and operations ------------------------------------------------------------------------
    ("interface_operations_inputs", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
      interfaces:
        Standard:
          create:
            implementation: scripts/install.sh
            inputs:
              version: "2.4"
          configure: scripts/configure.sh
          start: scripts/start.sh
""", ALL),
    ("interface_legacy_custom_type_used", "valid", """tosca_definitions_version: {V}
interface_types:
  my.interfaces.Maintenance:
    derived_from: tosca.interfaces.Root
    drain: {}
    upgrade:
      description: move to a new version
node_types:
  my.nodes.Svc:
    derived_from: tosca.nodes.SoftwareComponent
    interfaces:
      Maintenance:
        type: my.interfaces.Maintenance
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    svc:
      type: my.nodes.Svc
      requirements: [host: vm]
      interfaces:
        Maintenance:
          drain: scripts/drain.sh
""", ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2")),
    ("interface_1_3_operations_key", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
      interfaces:
        Standard:
          operations:
            create:
              implementation:
                primary: scripts/install.sh
                dependencies: [scripts/common.sh]
""", V13),
    ("interface_unknown_operation", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
      interfaces:
        Standard:
          instal: scripts/install.sh
""", ALL),
    ("interface_unknown_name", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
      interfaces:
        Lifecycle:
          create: scripts/install.sh
""", ALL),
    ("get_operation_output", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
      interfaces:
        Standard:
          create: scripts/install.sh
  outputs:
    install_log:
      value: {get_operation_output: [app, Standard, create, log_path]}
""", V12_13),

    # --- functions -------------------------------------------------------------------------------------
    ("functions_all_forms", "valid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    domain: {type: string, default: example.org}
    ports: {type: list, entry_schema: {type: integer}, default: [80, 443]}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2}}
    ws:
      type: tosca.nodes.WebServer
      requirements: [host: vm]
  outputs:
    url:
      value: {concat: ["http://", {get_attribute: [vm, public_address]}, ".", {get_input: domain}]}
    cpus:
      value: {get_property: [vm, host, num_cpus]}
    first_port:
      value: {get_input: [ports, 0]}
    host_cpus:
      value: {get_property: [ws, host, host, num_cpus]}
    joined:
      value: {join: [[a, b, c], ","]}
    part:
      value: {token: ["a.b.c", ".", 1]}
""", V13),
    ("get_attribute_unknown_attribute", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    ip:
      value: {get_attribute: [vm, ip_adress]}
""", ALL),
    ("get_property_unknown_property", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    db: {type: tosca.nodes.Database, properties: {name: x}}
  outputs:
    n:
      value: {get_property: [db, nam]}
""", ALL),
    ("get_input_unknown", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    size: {type: integer, default: 1}
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: {get_input: sise}
""", ALL),
    ("function_wrong_argument_count", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    x:
      value: {get_attribute: [vm]}
""", ALL),
    ("token_wrong_arguments", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    x:
      value: {token: ["a.b", "."]}
""", V13),
    ("get_operation_output_wrong_arguments", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    x:
      value: {get_operation_output: [vm, Standard, create]}
""", V12_13),
    ("get_artifact_known", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      artifacts:
        setup: {file: scripts/setup.sh, type: tosca.artifacts.Implementation.Bash}
  outputs:
    setup_path:
      value: {get_artifact: [vm, setup]}
""", V13),
    ("get_artifact_unknown", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    setup_path:
      value: {get_artifact: [vm, setup]}
""", V13),
    ("host_keyword", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Agent:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      cpus: {type: integer, required: false}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 4}}
    agent:
      type: my.nodes.Agent
      properties:
        cpus: {get_property: [HOST, host, num_cpus]}
      requirements: [host: vm]
""", ALL),

    # --- groups ----------------------------------------------------------------------------------------
    ("group_members", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    a: {type: tosca.nodes.Compute}
    b: {type: tosca.nodes.Compute}
  groups:
    servers:
      type: tosca.groups.Root
      members: [a, b]
""", ALL),
    ("group_unknown_member", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    a: {type: tosca.nodes.Compute}
  groups:
    servers:
      type: tosca.groups.Root
      members: [a, c]
""", ALL),
    ("group_unknown_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    a: {type: tosca.nodes.Compute}
  groups:
    servers:
      type: tosca.groups.Roo
      members: [a]
""", ALL),

    # --- substitution mappings, copy, workflows -----------------------------------------------------------
    ("substitution_mappings_ok", "valid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Database:
    derived_from: tosca.nodes.DBMS
    attributes:
      url: {type: string}
topology_template:
  inputs:
    port: {type: integer, default: 5432}
  node_templates:
    vm: {type: tosca.nodes.Compute}
    dbms:
      type: tosca.nodes.DBMS
      properties: {port: {get_input: port}}
      requirements: [host: vm]
  outputs:
    url: {value: {get_attribute: [vm, private_address]}}
  substitution_mappings:
    node_type: my.nodes.Database
    properties:
      port: [port]
    attributes:
      url: [url]
    capabilities:
      host: [dbms, host]
    requirements:
      dependency: [dbms, dependency]
""", V13),
    ("substitution_mappings_1_2_lists", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements: [host: vm]
  substitution_mappings:
    node_type: tosca.nodes.WebServer
    capabilities:
      data_endpoint: [ws, data_endpoint]
    requirements:
      host: [ws, host]
""", V12_13),
    ("substitution_unknown_requirement", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements: [host: vm]
  substitution_mappings:
    node_type: tosca.nodes.WebServer
    requirements:
      database: [ws, database]
""", V12_13),
    ("substitution_unknown_output", "invalid", """tosca_definitions_version: {V}
node_types:
  my.nodes.Svc:
    derived_from: tosca.nodes.Root
    attributes:
      url: {type: string}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    address: {value: {get_attribute: [vm, private_address]}}
  substitution_mappings:
    node_type: my.nodes.Svc
    attributes:
      url: [url]
""", V13),
    ("substitution_unknown_node_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  substitution_mappings:
    node_type: my.nodes.Nowhere
""", V12_13),
    ("substitution_unknown_node", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  substitution_mappings:
    node_type: tosca.nodes.Compute
    capabilities:
      host: [server, host]
""", V12_13),
    ("copy_node_template", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm1:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2, mem_size: 4 GB}}
    vm2:
      copy: vm1
      capabilities:
        host: {properties: {num_cpus: 4}}
""", V13),
    ("copy_unknown_node", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm1: {type: tosca.nodes.Compute}
    vm2:
      copy: vm3
""", V13),
    ("copy_of_copy", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm1: {type: tosca.nodes.Compute}
    vm2: {copy: vm1}
    vm3: {copy: vm2}
""", V13),
    ("workflow_valid", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [host: vm]
  workflows:
    deploy:
      description: install then start
      steps:
        install:
          target: app
          activities:
            - set_state: creating
            - call_operation: Standard.create
            - set_state: created
          on_success: [start]
        start:
          target: app
          activities:
            - call_operation: Standard.start
            - inline: notify
    notify:
      steps:
        log:
          target: vm
          activities:
            - set_state: started
""", V13),
    ("workflow_unknown_target", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  workflows:
    deploy:
      steps:
        one:
          target: ap
          activities:
            - set_state: started
""", V13),
    ("workflow_unknown_operation", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  workflows:
    deploy:
      steps:
        one:
          target: vm
          activities:
            - call_operation: Standard.boot
""", V13),
    ("workflow_unknown_step", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  workflows:
    deploy:
      steps:
        one:
          target: vm
          activities:
            - set_state: started
          on_success: [two]
""", V13),

    # --- document level --------------------------------------------------------------------------------
    ("metadata_and_description", "valid", """tosca_definitions_version: {V}
metadata:
  template_name: shop
  template_author: corpus
  template_version: 1.0.0
description: >
  A template whose every section is small.
dsl_definitions:
  small_host: &small_host
    num_cpus: 1
    mem_size: 1 GB
topology_template:
  description: the topology
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties: *small_host
""", ALL),
    ("short_and_prefixed_type_names", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: Compute}
    ws:
      type: tosca:WebServer
      requirements: [host: vm]
""", ALL),
    ("legacy_block_storage_name", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    disk:
      type: tosca.nodes.BlockStorage
      properties:
        size: 1 GB
""", ("tosca_simple_yaml_1_0",)),
    ("missing_version", "invalid", """topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", V13),
    ("unknown_top_level_key", "invalid", """tosca_definitions_version: {V}
node_template:
  vm: {type: tosca.nodes.Compute}
""", ALL),
    ("unknown_node_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Computer}
""", ALL),
    ("node_without_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      properties: {}
""", ALL),
    ("unknown_node_key", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      propertys: {}
""", ALL),
    ("output_without_value", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    ip:
      description: no value
""", ALL),
    ("not_yaml_mapping", "invalid", """- tosca_definitions_version: {V}
- topology_template
""", V13),
    ("yaml_syntax_error", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute
""", V13),
    ("scalable_capability", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        scalable:
          properties:
            min_instances: 1
            max_instances: 5
            default_instances: 2
""", ALL),
    ("scalable_bad_range", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        scalable:
          properties:
            min_instances: 3
            max_instances: 5
            default_instances: 9
""", ALL),
    ("endpoint_capability_ports", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements: [host: vm]
      capabilities:
        data_endpoint:
          properties:
            protocol: http
            port: 8080
            url_path: /
    lb:
      type: tosca.nodes.LoadBalancer
      requirements:
        - application: ws
""", ALL),
    ("endpoint_bad_port", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    ws:
      type: tosca.nodes.WebServer
      requirements: [host: vm]
      capabilities:
        data_endpoint:
          properties:
            port: 99999
""", ALL),
    ("unknown_capability_name", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        hosts:
          properties: {num_cpus: 1}
""", ALL),
    # --- the specification's non-normative example types ----------------------------------------------
    ("wordpress_mysql_stack", "valid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    db_name: {type: string, default: wordpress}
    db_root_pwd: {type: string, default: secret}
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1, mem_size: 2048 MB, disk_size: 10 GB}}
        os: {properties: {architecture: x86_64, type: linux, distribution: ubuntu}}
    mysql_dbms:
      type: tosca.nodes.DBMS.MySQL
      properties:
        root_password: {get_input: db_root_pwd}
      requirements: [host: server]
    mysql_database:
      type: tosca.nodes.Database.MySQL
      properties:
        name: {get_input: db_name}
      requirements: [host: mysql_dbms]
    webserver:
      type: tosca.nodes.WebServer.Apache
      requirements: [host: server]
    wordpress:
      type: tosca.nodes.WebApplication.WordPress
      properties:
        context_root: /blog
      requirements:
        - host: webserver
        - database_endpoint: mysql_database
""", ALL),
    ("logging_stack", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    elasticsearch:
      type: tosca.nodes.SoftwareComponent.Elasticsearch
      requirements: [host: vm]
    logstash:
      type: tosca.nodes.SoftwareComponent.Logstash
      requirements:
        - host: vm
        - search_endpoint: elasticsearch
    kibana:
      type: tosca.nodes.SoftwareComponent.Kibana
      requirements:
        - host: vm
        - search_endpoint: elasticsearch
    rsyslog:
      type: tosca.nodes.SoftwareComponent.Rsyslog
      requirements:
        - host: vm
        - log_endpoint: logstash
    collectd:
      type: tosca.nodes.SoftwareComponent.Collectd
      requirements:
        - host: vm
        - log_endpoint: logstash
""", ALL),
    ("mysql_database_on_wrong_host", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    web: {type: tosca.nodes.WebServer.Apache, requirements: [host: vm]}
    db:
      type: tosca.nodes.Database.MySQL
      properties: {name: x}
      requirements: [host: web]
""", ALL),
    ("logstash_wrong_search_endpoint", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    logstash:
      type: tosca.nodes.SoftwareComponent.Logstash
      requirements:
        - host: vm
        - search_endpoint: vm
""", ALL),
    # --- the NFV profile's later drafts (VDU.Compute, VduCp, VnfVirtualLink, data and policy types) --------
    ("nfv_vdu_compute_vnf", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vnf:
      type: tosca.nodes.nfv.VNF
      properties:
        descriptor_id: b1bb0ce7-0000-4000-8000-000000000001
        descriptor_version: "1.0"
        provider: Example
        product_name: Sample VNF
        software_version: "1.0"
        flavour_id: simple
        flavour_description: a simple flavour
      interfaces:
        Vnflcm:
          instantiate: []
    vdu1:
      type: tosca.nodes.nfv.VDU.Compute
      properties:
        name: vdu1
        description: the first unit
        vdu_profile:
          min_number_of_instances: 1
          max_number_of_instances: 3
        sw_image_data:
          name: image
          version: "1.0"
          checksum: {algorithm: sha-256, hash: abc123}
          container_format: bare
          disk_format: qcow2
          min_disk: 1 GB
          size: 1 GB
      capabilities:
        virtual_compute:
          properties:
            virtual_memory:
              virtual_mem_size: 512 MB
            virtual_cpu:
              num_virtual_cpu: 1
      requirements:
        - virtual_storage: storage1
    storage1:
      type: tosca.nodes.nfv.VDU.VirtualBlockStorage
      properties:
        virtual_block_storage_data:
          size_of_storage: 1 GB
    cp1:
      type: tosca.nodes.nfv.VduCp
      properties:
        layer_protocols: [ipv4]
        order: 0
        protocol:
          - address_type: ip_address
            l3_address_data:
              ip_address_assignment: true
              floating_ip_activated: false
      requirements:
        - virtual_binding: vdu1
        - virtual_link: vl1
    vl1:
      type: tosca.nodes.nfv.VnfVirtualLink
      properties:
        connectivity_type:
          layer_protocols: [ipv4]
        vl_profile:
          max_bitrate_requirements: {root: 1048576, leaf: 1048576}
          min_bitrate_requirements: {root: 1048576, leaf: 1048576}
  policies:
    - scaling_aspects:
        type: tosca.policies.nfv.ScalingAspects
        properties:
          aspects:
            worker:
              name: worker
              description: more workers
              max_scale_level: 2
              step_deltas: [delta_1]
    - vdu1_initial_delta:
        type: tosca.policies.nfv.VduInitialDelta
        properties:
          initial_delta:
            number_of_instances: 1
        targets: [vdu1]
    - vdu1_scaling_deltas:
        type: tosca.policies.nfv.VduScalingAspectDeltas
        properties:
          aspect: worker
          deltas:
            delta_1:
              number_of_instances: 1
        targets: [vdu1]
    - levels:
        type: tosca.policies.nfv.InstantiationLevels
        properties:
          levels:
            small:
              description: one worker
              scale_info:
                worker: {scale_level: 0}
          default_level: small
    - spread:
        type: tosca.policies.nfv.AntiAffinityRule
        targets: [vdu1]
        properties:
          scope: nfvi_node
""", NFV),
    ("nfv_vducp_links_to_compute", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu1: {type: tosca.nodes.nfv.VDU.Compute}
    cp1:
      type: tosca.nodes.nfv.VduCp
      requirements:
        - virtual_binding: vdu1
        - virtual_link: vdu1
""", NFV),
    ("nfv_vdu_profile_missing_field", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu1:
      type: tosca.nodes.nfv.VDU.Compute
      properties:
        vdu_profile:
          min_number_of_instances: 1
""", NFV),
    ("nfv_affinity_bad_scope", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vdu1: {type: tosca.nodes.nfv.VDU.Compute}
  policies:
    - together:
        type: tosca.policies.nfv.AffinityRule
        targets: [vdu1]
        properties:
          scope: rack
""", NFV),
]
