"""Plain functions behind every CLI verb and REST endpoint: validate, plan, build, status, outputs, destroy, graph."""

from __future__ import annotations

import dataclasses
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from descriptors.diagnostics import DescriptorError
from descriptors.functions import FunctionError, Unresolved
from descriptors.loader import load_template, require_buildable, require_topology, resolve_inputs
from descriptors.secrets import Redactor, output_value, redactor, redactor_for, secret_input_names
from descriptors.template import Template
from descriptors.yamlpos import to_plain
from orchestrator import bounds, cost, observation
from orchestrator.errors import NotFound, UserError  # noqa: F401 - NotFound: callers catch service.NotFound
from orchestrator.mlops.monitoring import monitoring_status
from orchestrator.plan import Plan, attribute_view, make_resolver, plan_changes
from orchestrator.scaling import desired_counts
from orchestrator.state import InfraRecord, StateStore
from orchestrator.states import BILLED, InfraStatus, InstanceStatus
from orchestrator.stored import require_infra, stored_inputs, stored_template

if TYPE_CHECKING:  # the engine (networkx, executor) is imported by the functions that run it: `status` stays light
    import networkx as nx

    from orchestrator.executor import RunOptions

# Health checks for (instance, its node's health_check) pairs -> a result with .ok and .detail (or None: nothing
# to check) per pair; the CLI passes the maintain loop's probes.
Prober = Callable[[list[tuple[Any, dict]]], list]
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

STATUS_WORKERS = 8  # infrastructures observed at once by `status` of all of them


@dataclass
class Loaded:
    template: Template
    graph: nx.DiGraph


def load_checked(path: str, confined: bool = True, library: bool = False,
                 template: Template | None = None) -> Loaded:
    """Load, validate and check the dependency graph of one descriptor.

    confined: imports stay inside the descriptor's directory tree (the REST API's setting; the
    CLI passes False). library: a type library without topology_template is accepted (validate).
    template: the descriptor already read from `path` (checked here, not read again).
    """
    from orchestrator.graph import check_acyclic, dependency_graph
    template = _load_bounded(path, confined, library, template)
    graph = dependency_graph(template)
    check_acyclic(template, graph)
    return Loaded(template, graph)


def _load_bounded(path: str, confined: bool, library: bool, template: Template | None = None) -> Template:
    template = template or load_template(path, confined=confined)
    if not library:
        require_topology(template)
    bounds.check_template(template)
    return template


def check_descriptor(path: str, confined: bool = True, library: bool = False) -> Template:
    """What load_checked checks, without building the networkx graph unless there is a cycle to name.

    `strato validate` needs no graph, and importing networkx is most of its start-up time.
    """
    from orchestrator.graph import is_acyclic
    template = _load_bounded(path, confined, library)
    if not is_acyclic(template):
        from orchestrator.graph import check_acyclic, dependency_graph
        check_acyclic(template, dependency_graph(template))
    return template


def validate(paths: list[str], confined: bool = True) -> list[dict]:
    """One result per file: {file, ok, diagnostics[]}; never raises for descriptor problems."""
    results = []
    for path in paths:
        try:
            template = check_descriptor(path, confined, library=True)
            diags = [d.to_dict() for d in template.warnings]
            results.append({"file": path, "ok": True, "nodes": len(template.node_templates),
                            "library": template.is_library, "diagnostics": diags})
        except DescriptorError as exc:
            results.append({"file": path, "ok": not any(d.severity == "error" for d in exc.diagnostics),
                            "diagnostics": [d.to_dict() for d in exc.diagnostics]})
    return results


def check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise UserError(f"infrastructure name '{name}' must be 1-63 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")


def open_store(path: str | None = None) -> StateStore:
    return StateStore(path)


def _inputs_for(template: Template, store: StateStore, name: str, given: dict[str, Any],
                cwd: str | None = None) -> dict:
    """Inputs of a previous build of this infrastructure, overridden by those given now (relative paths in those
    against `cwd` when the user typed them in a shell there)."""
    stored = store.get_infra(name)
    merged = {k: v for k, v in (stored.inputs if stored else {}).items() if k in template.inputs}
    merged.update(paths_from_cwd(template, given, cwd) if cwd else given)
    return resolve_inputs(template, merged)


def paths_from_cwd(template: Template, given: dict[str, Any], cwd: str) -> dict[str, Any]:
    """`given` with each relative value of an input that a backend reads as a file path (`inventory: {get_input:
    inventory}` of an SSH pool, a Terraform module, ...) made absolute against `cwd`, as a shell user means it; the
    descriptor's own defaults stay relative to the descriptor, and so is it stored for later builds."""
    from drivers.providers import UnknownDriver, driver_class
    path_inputs = set()
    for node, tmpl in template.node_templates.items():
        try:
            names = driver_class(template.driver_name(node) or "").path_properties
        except (UnknownDriver, ImportError, AttributeError):
            continue
        for prop in names:
            raw = to_plain(tmpl.properties.get(prop))
            source = raw.get("get_input") if isinstance(raw, dict) and len(raw) == 1 else None
            path_inputs.add(source[0] if isinstance(source, list) and len(source) == 1 else source)
    return {k: os.path.join(cwd, os.path.expanduser(v)) if k in path_inputs and isinstance(v, str) and v else v
            for k, v in given.items()}


def plan(path: str, name: str, given_inputs: dict[str, Any], store: StateStore, refresh: bool = True,
         confined: bool = True, loaded: Loaded | None = None, cwd: str | None = None) -> Plan:
    """What a build would do; `loaded`: the descriptor at `path` already loaded and checked (not parsed again);
    `cwd`: the shell's directory, which relative paths among `given_inputs` are relative to."""
    check_name(name)
    loaded = loaded or load_checked(path, confined)
    inputs = _inputs_for(loaded.template, store, name, given_inputs, cwd)
    infra = store.get_infra(name)
    if infra is None:
        infra = InfraRecord(name, "new", path, inputs, InfraStatus.NEW, {}, 0, 0)
    instances = store.instances(name) if infra.uid != "new" else []
    if infra.uid != "new":
        loaded = _rollout_view(store, name, loaded, infra, inputs)
    counts = desired_counts(loaded.template, infra, inputs)
    bounds.check_counts(loaded.template, inputs, counts, infra.desired, given_inputs)
    if refresh:
        instances = _refresh(store, name, instances, record=False)
    return plan_changes(loaded.template, infra, instances, inputs, loaded.graph, counts)


def _refresh(store: StateStore, name: str, instances, record: bool = True):
    """Observe every instance Strato believes exists; each then reads what its backend says now.

    A vanished one becomes `missing` (the plan recreates it); one whose backend cannot answer becomes
    `unknown` with the reason (never the stored `ready`, and never recreated over what cannot be seen).
    record=False (a plan) changes only the returned records, not the state."""
    targets = [r for r in instances if r.status in observation.OBSERVED and r.handle is not None]
    seen = observation.observe_all(targets)
    out = []
    for rec in instances:
        obs = seen.get(rec.key)
        if obs is not None:
            rec = observation.record(store, name, rec, obs) if record else observation.implied(rec, obs)
        if rec is not None:
            out.append(rec)
    return out


def build(path: str, name: str, given_inputs: dict[str, Any], store: StateStore, options: RunOptions,
          on_event=None, holder: str = "strato build", confined: bool = True, loaded: Loaded | None = None,
          cwd: str | None = None) -> dict:
    """Bring an infrastructure to what the descriptor says; resumable after a crash or failure.

    loaded: the descriptor at `path` already loaded and checked (the API's check worker did), not parsed again.
    cwd: the shell's directory, which relative paths among `given_inputs` are relative to (the CLI's)."""
    check_name(name)
    loaded = loaded or load_checked(path, confined)
    template = loaded.template
    require_buildable(template)
    inputs = _inputs_for(template, store, name, given_inputs, cwd)
    stored = store.get_infra(name)
    bounds.check_counts(template, inputs, desired_counts(template, stored, inputs),
                        stored.desired if stored else {}, given_inputs)
    with store.locked(name, holder, options.lock_wait):
        infra = store.ensure_infra(name, os.path.abspath(path), inputs, secret=secret_input_names(template))
        store.set_node_dependencies(name, {n: list(loaded.graph.successors(n)) for n in template.node_templates})
        infra = store.get_infra(name)
        loaded = _rollout_view(store, name, loaded, infra, inputs)   # model servers: pinned versions, canaries
        template = loaded.template
        instances = _refresh(store, name, store.instances(name))
        counts = desired_counts(template, infra, inputs)
        the_plan = plan_changes(template, infra, instances, inputs, loaded.graph, counts)
        store.set_infra_status(name, InfraStatus.BUILDING)
        store.journal(name, "build_started", None, changes=len(the_plan.changes))
        if on_event:
            on_event({"event": "planned", "node": None, "index": None, "changes": len(the_plan.changes)})
        from orchestrator.executor import BuildRun
        result = BuildRun(template, infra, the_plan, loaded.graph, inputs, counts, store, options, on_event).run()
        _fail_unobserved(result, store.instances(name))
        _route_after_build(result, store, name, template)
        for node in set(store.get_infra(name).dependencies) - set(template.node_templates):
            if not any(r.node == node for r in store.instances(name)):
                store.forget_node(name, node)
        outputs = compute_outputs(template, store, name, inputs, counts)
        store.set_infra_status(name, InfraStatus.READY if result.ok else InfraStatus.FAILED, outputs)
        store.journal(name, "build_finished", None, ok=result.ok, failures=result.failures)
    report = result.to_dict()
    report.update({"infrastructure": name, "plan": the_plan.summary(), "outputs": outputs})
    return report


def _route_after_build(result, store: StateStore, name: str, template: Template) -> None:
    """A freshly built stack routes at once: each Router gets its routed node's ready instances now; a router that
    cannot be synced fails the build (it would serve nothing)."""
    from orchestrator.mlops import routing
    for outcome in routing.sync_routers(store, name, template):
        if outcome.error:
            result.ok = False
            result.failures.append({"node": outcome.router, "index": outcome.index,
                                    "action": "route", "error": outcome.error})


def _rollout_view(store: StateStore, name: str, loaded: Loaded, infra: InfraRecord, inputs: dict) -> Loaded:
    """The descriptor as the maintain loop builds it: each model server on its pinned version, a rollout's canary."""
    from orchestrator.mlops.rollout import RolloutController
    return Loaded(*RolloutController(store, name).view(loaded.template, loaded.graph, infra, inputs))


def _fail_unobserved(result, instances: list) -> None:
    """A build cannot call an instance ready that it could not observe (its backend did not answer): each is a
    failure of the build, and the instance is left as it is rather than recreated beside itself."""
    for rec in instances:
        if rec.status == InstanceStatus.UNKNOWN:
            result.ok = False
            result.failures.append({"node": rec.node, "index": rec.index, "action": "observe", "error": rec.error})


def compute_outputs(template: Template, store: StateStore, name: str, inputs: dict, counts: dict,
                    instances: list | None = None, reveal: bool = False) -> dict:
    """The outputs' values; one that derives from a secret input reads MASK unless `reveal` (so what is stored
    and shown anywhere holds no secret)."""
    infra = store.get_infra(name)
    view = attribute_view(counts, infra, store.instances(name) if instances is None else instances)
    resolver = make_resolver(template, inputs, view)
    hide = redactor_for(template, inputs)
    values = {}
    for out in template.outputs.values():
        try:
            values[out.name] = output_value(out, resolver, hide, reveal)
        except (Unresolved, FunctionError):
            values[out.name] = None
    return values


def status(store: StateStore, name: str | None = None, refresh: bool = True, probe: Prober | None = None) -> dict:
    """Infrastructures with their instances, as observed now (refresh) and, with `probe`, health-checked now.

    A ready infrastructure with an instance that is not ready (gone, failed, unknown, unhealthy) is
    `degraded` and lists it under `missing`; instances a scale-down is deleting are `leaving`, not missing."""
    infras = [require_infra(store, name)] if name else store.list_infras()
    if len(infras) <= 1:
        return {"infrastructures": [_infra_status(store, infra, refresh, probe) for infra in infras]}
    # each infrastructure is observed (and probed) on its own thread: the slowest backend sets the wait, not the sum
    with ThreadPoolExecutor(max_workers=min(STATUS_WORKERS, len(infras)), thread_name_prefix="strato-status") as pool:
        return {"infrastructures": list(pool.map(lambda infra: _infra_status(store, infra, refresh, probe), infras))}


def _infra_status(store: StateStore, infra: InfraRecord, refresh: bool, probe: Prober | None) -> dict:
    instances = store.instances(infra.name)
    if refresh:
        instances = _refresh(store, infra.name, instances)
    probe_error = _probe(infra, instances, probe) if probe else None
    leaving = [r for r in instances if r.status == InstanceStatus.DELETING]
    unhealthy = [r for r in instances if r.status not in (InstanceStatus.READY, InstanceStatus.DELETING)]
    state = infra.status
    if state == InfraStatus.READY and unhealthy:
        state = InfraStatus.DEGRADED
    outputs = _live_outputs(store, infra, instances) if unhealthy or leaving else infra.outputs
    hide = stored_redactor(infra)  # an instance may have copied a secret into its attributes or error
    return {"name": infra.name, "status": state, "descriptor": infra.descriptor,
            "outputs": outputs, "instances": [hide.value(r.to_dict()) for r in instances],
            "desired": infra.desired,
            "healthy": state == InfraStatus.READY and not unhealthy and probe_error is None,
            "missing": [hide.value(_brief(r)) for r in unhealthy],
            "leaving": [hide.value(_brief(r)) for r in leaving],
            **rollout_status(store, infra.name),
            **({"probe_error": probe_error} if probe_error else {}),
            **({"models": models} if (models := monitoring_status(store, infra.name)) else {})}


def rollout_status(store: StateStore, name: str) -> dict:
    """{"rollouts": [...]} for an infrastructure with model servers (their versions and any rollout), else {}."""
    from orchestrator.mlops.rollout import rollouts
    found = rollouts(store, name)
    return {"rollouts": found} if found else {}


def _brief(rec) -> dict:
    return {"node": rec.node, "index": rec.index, "status": rec.status, "error": rec.error}


def _probe(infra: InfraRecord, instances: list, probe: Prober) -> str | None:
    """Run each node's health_check on its ready instances; one that fails it becomes `unhealthy` (in the returned
    view only: the maintain loop owns replacing it after its grace period). Returns why the checks could not
    run, if they could not."""
    template = stored_template(infra)
    if template is None:
        return f"health checks not run: the descriptor {infra.descriptor} is gone or no longer valid"
    checks = {node: tmpl.properties.get("health_check") for node, tmpl in template.node_templates.items()}
    targets = [(i, rec, checks[rec.node]) for i, rec in enumerate(instances)
               if rec.status == InstanceStatus.READY and isinstance(checks.get(rec.node), dict)]
    results = probe([(rec, to_plain(check)) for _, rec, check in targets]) if targets else []
    for (i, rec, _), result in zip(targets, results):
        if result is not None and not result.ok:
            instances[i] = dataclasses.replace(rec, status=InstanceStatus.UNHEALTHY, error=result.detail)
    return None


def outputs(store: StateStore, name: str, refresh: bool = True) -> dict:
    """Outputs of an infrastructure, recomputed from its live instances when some are gone.

    A dead replica's URL must not be handed to a script, so when refresh finds instances that
    are not ready the outputs are resolved again over the ready ones only.
    """
    infra = require_infra(store, name)
    if not refresh:
        return infra.outputs
    instances = _refresh(store, name, store.instances(name))
    if all(r.status == InstanceStatus.READY for r in instances):
        return infra.outputs
    return _live_outputs(store, infra, instances)


def stored_redactor(infra: InfraRecord) -> Redactor:
    """Masks the text of an infrastructure's secret inputs (those stored sealed) wherever it appears."""
    return redactor(infra.inputs, infra.secret_inputs)


def reveal_outputs(store: StateStore, name: str) -> dict:
    """Every output in plain, secret ones too, computed again from the descriptor and the live instances
    (the stored outputs hold secret ones masked). For an explicit request only (`outputs --show-secrets`)."""
    infra = require_infra(store, name)
    instances = _refresh(store, name, store.instances(name))
    return _live_outputs(store, infra, instances, reveal=True)


def _live_outputs(store: StateStore, infra: InfraRecord, instances: list, reveal: bool = False) -> dict:
    template = stored_template(infra)
    if template is None and reveal:
        raise UserError(f"the descriptor '{infra.name}' was built from ({infra.descriptor}) is gone or no longer "
                        "valid, so its secret outputs cannot be computed again")
    if template is None:  # the descriptor is gone: no way to recompute, so withhold every value
        return {k: None for k in infra.outputs}
    live: list = []
    counts = {n: 0 for n in template.node_templates}
    for rec in instances:
        if rec.status == InstanceStatus.READY and rec.node in counts:
            # renumber the live instances so get_attribute lists exactly them
            live.append(dataclasses.replace(rec, index=counts[rec.node]))
            counts[rec.node] += 1
    inputs = stored_inputs(template, infra, strict=reveal)
    return compute_outputs(template, store, infra.name, inputs, counts, live, reveal)


def destroy(store: StateStore, name: str, options: RunOptions, on_event=None) -> dict:
    infra = require_infra(store, name)
    with store.locked(name, "strato destroy", options.lock_wait):
        store.set_infra_status(name, InfraStatus.DESTROYING)
        store.journal(name, "destroy_started", None)
        from orchestrator.executor import DestroyRun
        result = DestroyRun(infra, store, infra.dependencies, options, on_event).run()
        if result.ok and not store.instances(name):
            store.journal(name, "destroyed", None)
            store.delete_infra(name)
        else:
            store.set_infra_status(name, InfraStatus.DESTROY_FAILED)
    report = result.to_dict()
    report["infrastructure"] = name
    return report


def graph(path: str, fmt: str = "dot", confined: bool = True) -> str | dict | bytes:
    from orchestrator.graph import to_dot, to_json
    loaded = load_checked(path, confined)
    if fmt == "json":
        return to_json(loaded.graph, loaded.template)
    if fmt == "dot":
        return to_dot(loaded.graph, loaded.template)
    if fmt == "png":
        return _graph_png(loaded)
    raise UserError(f"unknown graph format '{fmt}' (use dot, json or png)")


def _graph_png(loaded: Loaded) -> bytes:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("PNG output needs matplotlib: pip install 'strato[plots]'") from None
    import io

    import networkx as nx
    g = loaded.graph
    # layered layout: dependencies at the bottom
    levels: dict[str, int] = {}
    for n in reversed(list(nx.topological_sort(g))):
        levels[n] = 1 + max((levels[s] for s in g.successors(n)), default=-1)
    for n, lvl in levels.items():
        g.nodes[n]["layer"] = lvl
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
    fig, ax = plt.subplots(figsize=(max(6, len(g) * 1.8), 2 + max(levels.values(), default=0) * 1.5))
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=14, node_size=2600, edge_color="#555555")
    labels = {n: f"{n}\n{loaded.template.node_templates[n].type.split('.')[-1]}" for n in g}
    nx.draw_networkx_labels(g, pos, labels=labels, ax=ax, font_size=8,
                            bbox={"boxstyle": "round,pad=0.4", "fc": "#cfe3ff", "ec": "#3b6db3"})
    ax.margins(x=0.15, y=0.2)
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def infrastructure_cost(store: StateStore, name: str) -> dict:
    """Hourly cost per node and in total of what an infrastructure runs now, priced from its instances' attributes."""
    infra = require_infra(store, name)
    nodes: dict[str, dict] = {}
    for rec in store.instances(name):
        if rec.status not in BILLED:
            continue
        attrs = dict(rec.attributes or {})
        props = {**(rec.handle or {}), **attrs}
        placed = attrs.get("placement") or {}
        if placed.get("cost_per_hour") is not None:
            props["cost_per_hour"] = placed["cost_per_hour"]
        hourly = cost.instance_hourly(rec.driver, props, props.get("region"))
        row = nodes.setdefault(rec.node, {"node": rec.node, "instances": 0, "drivers": [], "usd_per_hour": 0.0,
                                          "unpriced": 0, "pay_per_use": False})
        row["instances"] += 1
        if rec.driver not in row["drivers"]:
            row["drivers"].append(rec.driver)
        if getattr(cost.pricing_of(rec.driver), "per_use", False):
            row["pay_per_use"] = True
        if hourly is None:
            row["unpriced"] += 1
        else:
            row["usd_per_hour"] += hourly
    rows = sorted(nodes.values(), key=lambda r: r["node"])
    for r in rows:
        r["usd_per_hour"] = round(r["usd_per_hour"], 4)
    total = round(sum(r["usd_per_hour"] for r in rows), 4)
    table = cost.prices()
    return {"infrastructure": infra.name, "nodes": rows, "usd_per_hour": total,
            "usd_per_month": round(total * cost.HOURS_PER_MONTH, 2),
            "prices": {"source": table.get("source"), "retrieved": table.get("retrieved"),
                       "user_file": cost.user_price_file() if os.path.exists(cost.user_price_file()) else None},
            "notes": ["Lambda nodes cost per request and GB-second on top (pay per use)"]
            if any(r["pay_per_use"] for r in rows) else []}
