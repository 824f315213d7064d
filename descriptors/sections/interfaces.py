"""A node template's interfaces: operations, their implementations and inputs."""

from __future__ import annotations

import os

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.sections.common import section
from descriptors.template import NodeTemplate, Operation, Template
from descriptors.types import parse_operation
from descriptors.yamlpos import YMap

def parse_interfaces(template: Template, node: NodeTemplate, ntype, body: dict, sink: DiagnosticSink) -> None:
    ipath = node.path + ".interfaces"
    ifaces = section(body, "interfaces", sink, ipath)
    if not ifaces:
        node.interfaces = {}
        return
    types = template.types
    base_dir = template.directory
    for iname, ibody in ifaces.items():
        path = join_path(ipath, iname)
        ipos = ifaces.key_position(iname)
        idef = ntype.interfaces.get(iname)
        if idef is None:
            sink.error("INTERFACE_UNKNOWN", f"node type '{node.type}' has no interface '{iname}'", ipos, path,
                       did_you_mean(iname, ntype.interfaces) or "the lifecycle interface is called 'Standard'")
            continue
        if not isinstance(ibody, dict):
            sink.error("INTERFACE_BAD", f"interface '{iname}' must be a mapping of operations", ipos, path)
            continue
        known_ops = dict(types.interface_operations(idef.type))
        known_ops.update(idef.operations)
        ops = ibody.get("operations") if isinstance(ibody.get("operations"), dict) else {
            k: v for k, v in ibody.items() if k not in ("inputs", "type", "notifications")}
        ops_path = join_path(path, "operations") if "operations" in ibody else path
        for oname, obody in ops.items():
            opath = join_path(ops_path, oname)
            opos = ops.key_position(oname) if isinstance(ops, YMap) else ipos
            if oname not in known_ops:
                sink.error("OPERATION_UNKNOWN", f"interface '{iname}' ({idef.type}) has no operation '{oname}'",
                           opos, opath, did_you_mean(oname, known_ops) or
                           (f"its operations are: {', '.join(known_ops)}" if known_ops else ""))
                continue
            op = parse_operation(oname, obody, sink, opath, opos)
            defined = known_ops[oname]
            inputs = dict(idef.inputs)
            inputs.update(defined.inputs)
            inputs.update(op.inputs)
            operation = Operation(iname, oname, op.implementation or defined.implementation,
                                  op.dependencies or defined.dependencies, inputs,
                                  op.outputs or defined.outputs, opos, opath)
            node.operations[(iname, oname)] = operation
            impl = operation.implementation
            if isinstance(impl, str) and impl not in node.artifacts and impl not in (body.get("artifacts") or {}) \
                    and "://" not in impl and not os.path.isabs(impl) and os.path.isdir(base_dir) \
                    and not os.path.exists(os.path.join(base_dir, impl)):
                sink.warning("ARTIFACT_NOT_FOUND", f"the implementation '{impl}' of {iname}.{oname} does not exist "
                             "beside the descriptor", opos, opath)
