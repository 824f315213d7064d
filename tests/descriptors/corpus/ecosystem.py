"""TOSCA as the ecosystem writes it: templates shaped like public TOSCA examples (tosca-parser's, Tacker's, the
NFV SOL001 style), written for this corpus, one group per construct that tools disagreed on.

Each case is (name, verdict, text, versions) as in bases.py; names start with 'eco_', so that
benchmarks/tosca_corpus.py can report agreement with tosca-parser on this held-out-style part apart.
The verdict is the TOSCA specification's; where tosca-parser's verdict differs on purpose, the case says why
and descriptors/TOSCA-COMPATIBILITY.md lists it.
"""

V10 = ("tosca_simple_yaml_1_0",)
V12 = ("tosca_simple_yaml_1_2",)
ALL = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2", "tosca_simple_yaml_1_3")
OLD = ("tosca_simple_yaml_1_0", "tosca_simple_yaml_1_2")

ECOSYSTEM_LIBRARIES = {
    # a type file without tosca_definitions_version, as TOSCA 1.0 collections often ship them
    "lib/eco/no-version-types.yaml": """description: web tier types (no tosca_definitions_version)
node_types:
  eco.nodes.Frontend:
    derived_from: tosca.nodes.WebApplication
    properties:
      context_root: {type: string, required: false, default: /}
""",
    # a CSAR-like layout: Definitions/ files import each other as 'Definitions/<file>'
    "lib/eco/Definitions/app-types.yaml": """tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - Definitions/base-types.yaml
node_types:
  eco.nodes.Shop:
    derived_from: eco.nodes.ShopBase
    properties:
      currency: {type: string, default: EUR}
""",
    "lib/eco/Definitions/base-types.yaml": """tosca_definitions_version: tosca_simple_yaml_1_0
node_types:
  eco.nodes.ShopBase:
    derived_from: tosca.nodes.WebApplication
    requirements:
      - database_endpoint:
          capability: tosca.capabilities.Endpoint.Database
          node: tosca.nodes.Database
          relationship: tosca.relationships.ConnectsTo
""",
    # NFV data, capability and node types in the ETSI SOL001 style (written for this corpus)
    "lib/eco/nfv-common.yaml": """tosca_definitions_version: tosca_simple_yaml_1_2
description: common NFV types in the SOL001 style
data_types:
  tosca.datatypes.nfv.VirtualMemory:
    derived_from: tosca.datatypes.Root
    properties:
      virtual_mem_size: {type: scalar-unit.size, required: true}
      numa_enabled: {type: boolean, required: false}
      vdu_mem_requirements: {type: map, required: false, entry_schema: {type: string}}
  tosca.datatypes.nfv.VirtualCpu:
    derived_from: tosca.datatypes.Root
    properties:
      num_virtual_cpu: {type: integer, required: true, constraints: [greater_than: 0]}
      cpu_architecture: {type: string, required: false}
      virtual_cpu_clock: {type: scalar-unit.frequency, required: false}
  tosca.datatypes.nfv.SwImageData:
    derived_from: tosca.datatypes.Root
    properties:
      name: {type: string, required: true}
      version: {type: string, required: true}
      container_format: {type: string, required: true, constraints: [valid_values: [bare, ovf, docker]]}
      disk_format: {type: string, required: true, constraints: [valid_values: [qcow2, raw, iso]]}
      min_disk: {type: scalar-unit.size, required: true}
      size: {type: scalar-unit.size, required: true}
  tosca.datatypes.nfv.VnfInstantiationLevels:
    derived_from: tosca.datatypes.Root
    properties:
      levels: {type: map, required: true, entry_schema: {type: string}}
      default_level: {type: string, required: false}
capability_types:
  tosca.capabilities.nfv.VirtualCompute:
    derived_from: tosca.capabilities.Node
    properties:
      virtual_memory: {type: tosca.datatypes.nfv.VirtualMemory, required: true}
      virtual_cpu: {type: tosca.datatypes.nfv.VirtualCpu, required: true}
  tosca.capabilities.nfv.VirtualBindable:
    derived_from: tosca.capabilities.Node
node_types:
  tosca.nodes.nfv.Vdu.Compute:
    derived_from: tosca.nodes.Root
    properties:
      name: {type: string, required: true}
      description: {type: string, required: false}
      sw_image_data: {type: tosca.datatypes.nfv.SwImageData, required: false}
    capabilities:
      virtual_compute:
        type: tosca.capabilities.nfv.VirtualCompute
      virtual_binding:
        type: tosca.capabilities.nfv.VirtualBindable
""",
}

ECOSYSTEM = [
    # --- normative short type names -----------------------------------------------------------------
    ("eco_shortname_types", "valid", """tosca_definitions_version: {V}
description: normative types by their shorthand names
node_types:
  eco.nodes.Proxy:
    derived_from: SoftwareComponent
    properties:
      listen: {type: PortDef, default: 8080}
      admin: {type: tosca.datatypes.Credential, required: false}
topology_template:
  node_templates:
    server:
      type: Compute
      capabilities:
        host:
          properties: {num_cpus: 2, mem_size: 2 GB}
    proxy:
      type: eco.nodes.Proxy
      properties:
        listen: 8443
        admin: {user: ops, token: changeme}
      requirements:
        - host:
            node: server
            relationship: HostedOn
    volume:
      type: tosca:BlockStorage
      properties: {size: 10 GB}
""", ALL),
    ("eco_shortname_unknown", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server:
      type: Computer
""", ALL),
    ("eco_shortname_portdef_out_of_range", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    listen:
      type: PortDef
      default: 70000
  node_templates:
    server: {type: Compute}
""", ALL),
    # --- imports ------------------------------------------------------------------------------------
    ("eco_import_without_version", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/eco/no-version-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    web:
      type: tosca.nodes.WebServer
      requirements: [{host: vm}]
    site:
      type: eco.nodes.Frontend
      properties: {context_root: /shop}
      requirements: [{host: web}]
""", ALL),
    ("eco_import_definitions_dir", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/eco/Definitions/app-types.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    web:
      type: tosca.nodes.WebServer
      requirements: [{host: vm}]
    dbms:
      type: tosca.nodes.DBMS
      requirements: [{host: vm}]
    db:
      type: tosca.nodes.Database
      properties: {name: shop}
      requirements: [{host: dbms}]
    shop:
      type: eco.nodes.Shop
      requirements:
        - host: web
        - database_endpoint: db
""", OLD),
    ("eco_import_missing", "invalid", """tosca_definitions_version: {V}
imports:
  - Definitions/not-there.yaml
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
    # --- TOSCA 1.0/1.2 forms ------------------------------------------------------------------------
    ("eco_credential_relationship_value", "valid", """tosca_definitions_version: {V}
description: a relationship type that sets its credential, and credentials with 'user'
relationship_types:
  eco.relationships.DbLogin:
    derived_from: tosca.relationships.ConnectsTo
    properties:
      credential:
        user: shop
        token: shop-secret
node_types:
  eco.nodes.Catalog:
    derived_from: tosca.nodes.WebApplication
    requirements:
      - database_endpoint:
          capability: tosca.capabilities.Endpoint.Database
          node: tosca.nodes.Database
          relationship: tosca.relationships.ConnectsTo
topology_template:
  node_templates:
    catalog:
      type: eco.nodes.Catalog
      requirements:
        - host: web
        - database_endpoint:
            node: db
            relationship: eco.relationships.DbLogin
    web:
      type: tosca.nodes.WebServer
      properties:
        admin_credential: {user: admin, token: letmein}
      requirements: [{host: vm}]
    db:
      type: tosca.nodes.Database
      properties: {name: catalog, user: shop, password: shop-secret}
      requirements: [{host: dbms}]
    dbms:
      type: tosca.nodes.DBMS
      properties: {root_password: root-secret, port: 3306}
      requirements: [{host: vm}]
    vm: {type: tosca.nodes.Compute}
""", OLD),
    ("eco_relationship_type_properties", "valid", """tosca_definitions_version: {V}
relationship_types:
  eco.relationships.Mount:
    derived_from: tosca.relationships.AttachesTo
    properties:
      mode:
        type: string
        default: rw
        constraints:
          - valid_values: [ro, rw]
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: data
            relationship: data_mount
    data:
      type: tosca.nodes.BlockStorage
      properties: {size: 20 GB}
  relationship_templates:
    data_mount:
      type: eco.relationships.Mount
      properties:
        location: /var/data
        mode: ro
""", ALL),
    # tosca-parser does not check the property values of relationship templates; the specification does
    ("eco_relationship_property_bad_value", "invalid", """tosca_definitions_version: {V}
relationship_types:
  eco.relationships.Mount:
    derived_from: tosca.relationships.AttachesTo
    properties:
      retries: {type: integer, default: 3}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: data
            relationship: data_mount
    data:
      type: tosca.nodes.BlockStorage
      properties: {size: 20 GB}
  relationship_templates:
    data_mount:
      type: eco.relationships.Mount
      properties:
        location: /var/data
        retries: [1, 2]
""", ALL),
    ("eco_tacker_policy_types", "valid", """tosca_definitions_version: {V}
description: Tacker-style policy types ('action' in a policy type, values in place of definitions)
policy_types:
  eco.policies.Failure:
    derived_from: tosca.policies.Root
    action:
      type: string
  eco.policies.Failure.Respawn:
    derived_from: eco.policies.Failure
    action: respawn
  eco.policies.Probe:
    derived_from: tosca.policies.Root
    properties:
      name: {type: string, required: true}
      actions: {type: map, entry_schema: {type: string}, required: true}
  eco.policies.Probe.Ping:
    derived_from: eco.policies.Probe
    properties:
      name: ping
  eco.policies.Scaling:
    derived_from: tosca.policies.Scaling
    properties:
      increment: {type: integer, required: true}
      min_instances: {type: integer, required: true}
      max_instances: {type: integer, required: true}
      default_instances: {type: integer, required: true}
topology_template:
  node_templates:
    vdu1: {type: tosca.nodes.Compute}
  policies:
    - scale_vdu1:
        type: eco.policies.Scaling
        targets: [vdu1]
        properties:
          increment: 1
          min_instances: 1
          max_instances: 3
          default_instances: 1
""", V12 + ("tosca_simple_profile_for_nfv_1_0_0",)),
    ("eco_nfv_sol001_data_types", "valid", """tosca_definitions_version: {V}
imports:
  - ../lib/eco/nfv-common.yaml
topology_template:
  inputs:
    descriptor_version:
      type: version
      default: 1.0.2
  node_templates:
    vdu1:
      type: tosca.nodes.nfv.Vdu.Compute
      properties:
        name: vdu1
        sw_image_data:
          name: cirros
          version: "0.5"
          container_format: bare
          disk_format: qcow2
          min_disk: 1 GB
          size: 16 MB
      capabilities:
        virtual_compute:
          properties:
            virtual_memory:
              virtual_mem_size: 512 MB
            virtual_cpu:
              num_virtual_cpu: 1
              virtual_cpu_clock: 2 GHz
""", V12),
    ("eco_nfv_sol001_bad_field", "invalid", """tosca_definitions_version: {V}
imports:
  - ../lib/eco/nfv-common.yaml
topology_template:
  node_templates:
    vdu1:
      type: tosca.nodes.nfv.Vdu.Compute
      properties:
        name: vdu1
      capabilities:
        virtual_compute:
          properties:
            virtual_memory:
              virtual_mem_size: 512 MB
            virtual_cpu:
              num_virtual_cpu: many
""", V12),
    ("eco_policy_type_unknown_targets", "invalid", """tosca_definitions_version: {V}
policy_types:
  eco.policies.Placement:
    derived_from: tosca.policies.Placement
    targets: [eco.nodes.NotDefined]
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
  policies:
    - spread:
        type: eco.policies.Placement
        targets: [vm]
""", ALL),
    # --- HOST through a hosting chain, node_filter selection, custom interfaces ---------------------
    ("eco_host_through_chain", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    blog:
      type: tosca.nodes.WebApplication
      requirements:
        - host: httpd
      interfaces:
        Standard:
          configure:
            implementation: scripts/blog_configure.sh
            inputs:
              cpus: {get_property: [HOST, host, num_cpus]}
              address: {get_attribute: [HOST, private_address]}
              os_type: {get_property: [HOST, os, type]}
    httpd:
      type: tosca.nodes.WebServer
      requirements: [{host: vm}]
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties: {num_cpus: 2}
        os:
          properties: {type: linux}
""", ALL),
    ("eco_host_chain_nowhere", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    blog:
      type: tosca.nodes.WebApplication
      requirements:
        - host: httpd
      interfaces:
        Standard:
          configure:
            implementation: scripts/blog_configure.sh
            inputs:
              zone: {get_attribute: [HOST, availability_zone]}
    httpd:
      type: tosca.nodes.WebServer
      requirements: [{host: vm}]
    vm: {type: tosca.nodes.Compute}
""", ALL),
    ("eco_node_filter_selects", "valid", """tosca_definitions_version: {V}
description: the host is left to the orchestrator, selected by a node_filter
topology_template:
  node_templates:
    dbms:
      type: tosca.nodes.DBMS
      requirements:
        - host:
            node_filter:
              capabilities:
                - host:
                    properties:
                      - num_cpus: {in_range: [1, 4]}
                      - mem_size: {greater_or_equal: 2 GB}
                - os:
                    properties:
                      - type: {equal: linux}
""", ALL),
    ("eco_custom_interface_on_hosted_node", "valid", """tosca_definitions_version: {V}
interface_types:
  eco.interfaces.Maintenance:
    derived_from: tosca.interfaces.Root
    backup:
      description: dump the database
    rotate_logs:
      description: rotate the log files
node_types:
  eco.nodes.Catalogue:
    derived_from: tosca.nodes.Database
    interfaces:
      Maintenance:
        type: eco.interfaces.Maintenance
topology_template:
  node_templates:
    catalogue:
      type: eco.nodes.Catalogue
      properties: {name: catalogue}
      requirements:
        - host: dbms
      interfaces:
        Maintenance:
          backup:
            implementation: scripts/backup.sh
            inputs:
              target_dir: /var/backups
          rotate_logs: scripts/rotate.sh
    dbms:
      type: tosca.nodes.DBMS
      requirements: [{host: vm}]
    vm: {type: tosca.nodes.Compute}
""", OLD),
    ("eco_custom_interface_unknown_operation", "invalid", """tosca_definitions_version: {V}
interface_types:
  eco.interfaces.Maintenance:
    derived_from: tosca.interfaces.Root
    backup:
      description: dump the database
node_types:
  eco.nodes.Catalogue:
    derived_from: tosca.nodes.Database
    interfaces:
      Maintenance:
        type: eco.interfaces.Maintenance
topology_template:
  node_templates:
    catalogue:
      type: eco.nodes.Catalogue
      properties: {name: catalogue}
      requirements:
        - host: dbms
      interfaces:
        Maintenance:
          restore: scripts/restore.sh
    dbms:
      type: tosca.nodes.DBMS
      requirements: [{host: vm}]
    vm: {type: tosca.nodes.Compute}
""", OLD),
    # --- scalar coercion ----------------------------------------------------------------------------
    ("eco_scalar_coercion", "valid", """tosca_definitions_version: {V}
description: numbers where strings are declared, numerals where integers are
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: "2"
            mem_size: 2048 MB
        os:
          properties:
            type: linux
            distribution: ubuntu
            version: 22.04
    dbms:
      type: tosca.nodes.DBMS
      properties:
        root_password: 123456
        port: "3306"
      requirements: [{host: vm}]
""", ALL),
    ("eco_scalar_without_unit", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            mem_size: 2048
""", ALL),
    ("eco_scalar_coerced_violates_constraint", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: "0"
""", ALL),
    # --- implementation artifacts that do not exist -------------------------------------------------
    ("eco_missing_implementation", "valid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    agent:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
      interfaces:
        Standard:
          create: scripts/install_agent.sh
          start:
            implementation: scripts/start_agent.sh
""", ALL),
    # --- function signatures and indexes ------------------------------------------------------------
    ("eco_get_input_extra_argument", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    cpus:
      type: integer
      default: 2
      constraints:
        - valid_values: [1, 2, 4, 8]
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: {get_input: [cpus, cpus]}
""", OLD),
    ("eco_get_attribute_one_argument", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
  outputs:
    address:
      value: {get_attribute: [server]}
""", ALL),
    ("eco_get_property_one_argument", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
  outputs:
    cpus:
      value: {get_property: [server]}
""", ALL),
    ("eco_concat_no_arguments", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
  outputs:
    url:
      value: {concat: []}
""", ALL),
    ("eco_token_index_not_integer", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
  outputs:
    first:
      value: {token: [{get_attribute: [server, public_address]}, ".", first]}
""", ALL),
    ("eco_token_two_arguments", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server: {type: tosca.nodes.Compute}
  outputs:
    first:
      value: {token: [{get_attribute: [server, public_address]}, "."]}
""", ALL),
    ("eco_functions_well_formed", "valid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    domain: {type: string, default: example.org}
  node_templates:
    server:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties: {num_cpus: 2}
  outputs:
    url:
      value: {concat: ["http://", {get_attribute: [server, public_address]}, ":8080/"]}
    first_octet:
      value: {token: [{get_attribute: [server, private_address]}, ".", 0]}
    cpus:
      value: {get_property: [server, host, num_cpus]}
    site:
      value: {get_input: domain}
""", ALL),
    ("eco_get_attribute_index_on_string", "invalid", """tosca_definitions_version: {V}
topology_template:
  node_templates:
    server:
      type: tosca.nodes.Compute
      interfaces:
        Standard:
          configure:
            implementation: scripts/configure.sh
            inputs:
              ip_address: {get_attribute: [SELF, private_address, 0]}
""", ALL),
    ("eco_get_property_index_out_of_range", "invalid", """tosca_definitions_version: {V}
node_types:
  eco.nodes.Resolver:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      nameservers: {type: list, entry_schema: {type: string}}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    resolver:
      type: eco.nodes.Resolver
      properties:
        nameservers: [127.0.0.53, 127.0.0.54]   # data only: never contacted
      requirements: [{host: vm}]
      interfaces:
        Standard:
          configure:
            implementation: scripts/resolver.sh
            inputs:
              third: {get_property: [SELF, nameservers, 2]}
""", ALL),
    ("eco_get_property_index_in_range", "valid", """tosca_definitions_version: {V}
node_types:
  eco.nodes.Resolver:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      nameservers: {type: list, entry_schema: {type: string}}
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
    resolver:
      type: eco.nodes.Resolver
      properties:
        nameservers: [127.0.0.53, 127.0.0.54]   # data only: never contacted
      requirements: [{host: vm}]
      interfaces:
        Standard:
          configure:
            implementation: scripts/resolver.sh
            inputs:
              second: {get_property: [SELF, nameservers, 1]}
""", ALL),
    ("eco_input_default_wrong_type", "invalid", """tosca_definitions_version: {V}
topology_template:
  inputs:
    replicas:
      type: integer
      default: two
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", ALL),
]
