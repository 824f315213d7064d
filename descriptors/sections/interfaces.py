"""A node template's interfaces: operations, their implementations and inputs."""

from __future__ import annotations

import os

from descriptors.diagnostics import DiagnosticSink, did_you_mean, join_path
from descriptors.sections.common import path_inside, section
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
            _check_implementation(template, node, body, operation, sink)


def _check_implementation(template: Template, node: NodeTemplate, body: dict, op: Operation,
                          sink: DiagnosticSink) -> None:
    """A missing implementation file is a warning; in a confined descriptor one outside its directory tree is an
    error, decided from the name alone (whether a file outside exists must not show)."""
    impl = op.implementation
    if not isinstance(impl, str) or impl in node.artifacts or impl in (body.get("artifacts") or {}) or "://" in impl:
        return
    base_dir = os.path.realpath(template.directory)
    inside = path_inside(impl, base_dir, [base_dir])
    if inside is None and template.confined:
        sink.error("IMPLEMENTATION_OUTSIDE", f"the implementation '{impl}' of {op.interface}.{op.name} lies "
                   "outside the descriptor's directory tree", op.position, op.path,
                   "put the file beside the descriptor (in its bundle)")
    elif not os.path.isabs(impl) and os.path.isdir(base_dir) and not os.path.exists(os.path.join(base_dir, impl)):
        sink.warning("ARTIFACT_NOT_FOUND", f"the implementation '{impl}' of {op.interface}.{op.name} does not "
                     "exist beside the descriptor", op.position, op.path)
