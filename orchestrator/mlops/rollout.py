"""The rollout controller: run by each maintain pass, it moves a model server from its stable version to a new one.

Level-triggered, like the rest of the loop. Each pass:
 1. `view`: the descriptor as the engine should build it now: each model server runs its pinned stable version,
    and a rollout in progress adds a synthetic node `<node>~canary` (a copy running the canary version) whose
    count follows the canary's weight. Its instances are the engine's like any other node's: created with
    intent first, adopted after a crash, health-checked, deleted when the node leaves the view.
 2. `step` (after observing): resolve the model reference; a new version starts a rollout, an alias moved back
    by `strato models rollback` switches at once (no analysis); judge the window that just ended (policies/
    rollout.py), move through the steps, abort (weight 0 in this same pass, an event, the webhook, the version
    marked bad in the registry) or promote (the canary version pinned as stable, the stable replaced while the
    canary serves everything, then the canary removed).
 3. `weights_for` / `servers_for`: what the routers get at the end of the pass (orchestrator/mlops/routing.py).
Everything a restarted loop needs (phase, step, windows, failures, the counters' baseline) is in policy_state.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from drivers.common import CANARY_SUFFIX
from drivers.haproxy import HaproxyAdmin, server_name
from orchestrator.autoscale import Decisions, notify
from orchestrator.metrics import ScrapeSource, instance_metrics_url
from orchestrator.mlops import pinning, traffic
from orchestrator.mlops.pinning import POLICY, ModelPinError
from orchestrator.mlops.routing import routed_instances, routes
from orchestrator.states import InstanceStatus
from policies import rollout as ro
from policies.rollout import RolloutSpec, RolloutSpecError

IN_FLIGHT = (InstanceStatus.CREATING, InstanceStatus.REPLACING, InstanceStatus.DELETING)


def canary_node(node: str) -> str:
    return node + CANARY_SUFFIX


def rollouts(store, infra: str) -> list[dict]:
    """Each model server's rollout as status shows it (policies.rollout.describe), by node."""
    return [{"node": node, **ro.describe(state)} for (policy, node), state in sorted(store.policy_states(infra).items())
            if policy == POLICY and state]


def model_servers(template) -> dict[str, Any]:
    """node -> its template, for every model server that names a `model`."""
    if template.types is None:
        return {}
    return {name: node for name, node in template.node_templates.items()
            if isinstance((node.properties or {}).get("model"), str)
            and pinning.is_model_server(template.types, node.type)}


def spec_of(template, node: str, inputs: dict) -> RolloutSpec:
    """The node's rollout block, inputs applied (validated at load; one broken by an input gets the defaults)."""
    from descriptors.functions import FunctionError, template_resolver
    from descriptors.yamlpos import to_plain

    def no_attributes(node_name: str, attribute: str):
        raise FunctionError("a rollout block cannot read attributes")
    raw = (template.node_templates[node].properties or {}).get("rollout")
    try:
        return RolloutSpec.parse(to_plain(template_resolver(template, inputs, no_attributes).resolve(raw, node)))
    except (RolloutSpecError, FunctionError, LookupError, TypeError):
        return RolloutSpec()


def alias_move(home: str, ref: str) -> str | None:
    """How the alias a reference names last moved (promote | rollback | push), None for a fixed version."""
    name, _, alias = ref.removeprefix("models:/").partition("@")
    if not alias:
        return None
    try:
        moves = pinning.registry_for(home).alias_history(name, alias)
    except Exception:
        return None
    return moves[-1]["kind"] if moves else None


def with_canary(template, states: dict, counts_of, specs: dict[str, RolloutSpec]) -> Any:
    """The descriptor as a pass builds it: pinned stable versions, and each rollout's canary node."""
    servers = model_servers(template)
    if not servers:
        return template
    nodes = dict(template.node_templates)
    for name, tmpl in servers.items():
        state = states.get((POLICY, name)) or {}
        if state.get("stable"):
            nodes[name] = dataclasses.replace(tmpl, properties={**tmpl.properties, "model": state["stable"]})
        if state.get("canary") and state.get("phase", ro.IDLE) != ro.IDLE:
            count = ro.canary_replicas(specs[name], state, counts_of(name))
            nodes[canary_node(name)] = dataclasses.replace(
                tmpl, name=canary_node(name), properties={**tmpl.properties, "model": state["canary"]},
                default_instances=count, min_instances=0, max_instances=None, count_inputs={})
    return dataclasses.replace(template, node_templates=nodes)


class RolloutController:
    """The rollouts of one infrastructure's model servers, pass by pass (see the module's docstring)."""

    def __init__(self, store, name: str, dry_run: bool = False):
        self.store, self.name, self.dry_run = store, name, dry_run
        self.scraper = ScrapeSource(timeout=1.0)
        self.weights: dict[str, dict[str, int]] = {}    # routed node -> server name -> weight (this pass)
        self.frozen: dict[str, str] = {}                # node -> why its autoscaling is held this pass
        self._graphs: dict[tuple, Any] = {}
        self._live = 0                                  # canary instances serving, this pass
        self._infra = None
        self.specs: dict[str, RolloutSpec] = {}         # node -> its rollout block (inputs applied)
        self.refs: dict[str, str] = {}                  # node -> the model reference the descriptor names
        self.inputs: dict = {}

    # -- 1. the view ------------------------------------------------------------------------------------------
    def view(self, template, graph, infra, inputs: dict) -> tuple[Any, Any]:
        """(template, graph) with the pinned versions and the canary nodes."""
        servers = model_servers(template)
        if not servers:
            self.refs = {}
            return template, graph
        from orchestrator.scaling import desired_count
        self.inputs = inputs
        self.specs = {node: spec_of(template, node, inputs) for node in servers}
        self.refs = {node: str(tmpl.properties["model"]) for node, tmpl in servers.items()}
        states = self.store.policy_states(self.name)
        effective = with_canary(template, states, lambda n: desired_count(infra, n, template, inputs) or 0,
                                self.specs)
        added = tuple(sorted(set(effective.node_templates) - set(template.node_templates)))
        if not added:
            return effective, graph
        key = (id(template), added)
        if key not in self._graphs:
            from orchestrator.graph import dependency_graph
            self._graphs = {key: dependency_graph(effective)}
        return effective, self._graphs[key]

    # -- 2. each pass -------------------------------------------------------------------------------------------
    def step(self, template, seen, counts: dict, out: Decisions, now: float) -> None:
        """Every model server's rollout moved on by what this pass saw; state and events go to `out`."""
        self.weights, self.frozen = {}, {}
        self._infra = self.store.get_infra(self.name)
        states = self.store.policy_states(self.name)
        for node, ref in self.refs.items():
            before = states.get((POLICY, node)) or {}
            state = self._versions(node, ref, before, now, out)
            if state.get("stable"):
                state = self._progress(node, self.specs.get(node, RolloutSpec()), state, template, seen, counts,
                                       now, out)
            if state != before and not self.dry_run:
                out.states.append((POLICY, node, state))

    def _versions(self, node: str, ref: str, state: dict, now: float, out: Decisions) -> dict:
        """Start, cancel or switch a rollout when the reference names another version than the one running."""
        try:
            desired = pinning.resolve(self.store.home, ref)
        except ModelPinError as exc:
            out.event("rollout_error", once=f"rollout:{node}", node=node, error=str(exc))
            return state
        out.forget.append(f"rollout:{node}")
        stable, canary = state.get("stable"), state.get("canary") or {}
        phase = state.get("phase", ro.IDLE)
        if stable is None or desired["ref"] == canary.get("ref") or desired["ref"] in (state.get("failed") or []):
            return state
        if desired["ref"] == stable["ref"]:
            if phase in (ro.PROGRESSING, ro.BAKING, ro.PROMOTING) and canary:   # the reference went back
                out.event("rollout_cancelled", node=node, canary=canary.get("ref"), stable=stable["ref"],
                          reason=f"{ref} names the stable version {stable['ref']} again")
                return {**ro.abort(state, [f"{ref} names the stable version again"], now), "kept": 0,
                        "keep_until": now, "cancelled": True}
            return state
        spec = self.specs.get(node, RolloutSpec())
        if alias_move(self.store.home, ref) == "rollback":
            # `strato models rollback`: the good version takes all the traffic at once, without analysis
            state = {**ro.start(state, desired, now), "phase": ro.PROMOTING, "rollback": True}
            out.event("rollout_rollback", node=node, stable=stable["ref"], canary=desired["ref"],
                      reason=f"{ref} was rolled back: switching at once, without analysis")
            self._notify(spec, node, "rollout_rollback", state)
            return state
        out.event("rollout_started", node=node, stable=stable["ref"], canary=desired["ref"],
                  strategy=spec.strategy, steps=[dataclasses.asdict(s) for s in spec.steps])
        return ro.start(state, desired, now)

    def _progress(self, node: str, spec: RolloutSpec, state: dict, template, seen, counts: dict, now: float,
                  out: Decisions) -> dict:
        phase = state.get("phase", ro.IDLE)
        stable, canary = self._serving(template, node, seen.records)
        canary = self._current(template, canary_node(node), canary, seen, counts)   # running the canary version
        self._live = len(canary)
        if phase == ro.ABORTED:
            if now >= float(state.get("keep_until") or 0):
                out.event("rollout_retired", node=node, canary=(state.get("canary") or {}).get("ref"))
                state = ro.settle(state, "cancelled" if state.get("cancelled") else "aborted", now)
        elif phase == ro.PROMOTING:
            state = self._promote(node, spec, state, template, seen, counts, now, out)
        elif phase in (ro.PROGRESSING, ro.BAKING):
            state = self._analyse(node, spec, state, template, seen, counts, now, out)
        self._set_weights(node, spec, state, stable, canary, template, seen.records, out)
        if state.get("phase", ro.IDLE) != ro.IDLE:   # for status: the weight asked now, out of how many steps
            state = {**state, "weight": ro.canary_weight(spec, state), "steps": len(spec.steps)}
        return state

    # -- analysis and steps ------------------------------------------------------------------------------------------
    def _analyse(self, node: str, spec: RolloutSpec, state: dict, template, seen, counts, now: float,
                 out: Decisions) -> dict:
        """Judge the window (when it is due, or early when it already fails), then move through the steps."""
        state = {**state, "canary_ready": self._live >= counts.get(canary_node(node), 1)}
        scaling = self._scaling_in_flight(node, seen.records, counts)
        state = self._judge(node, spec, state, template, seen, now, out)
        if state["phase"] == ro.ABORTED:
            return self._aborted(node, spec, state, now, out, counts.get(canary_node(node), 1))
        if scaling:
            out.event("rollout_held", once=f"rollout-held:{node}", node=node, reason=scaling)
            return state
        out.forget.append(f"rollout-held:{node}")
        moved = ro.advance(spec, state, now)
        if moved["phase"] == ro.ABORTED:
            return self._aborted(node, spec, moved, now, out, counts.get(canary_node(node), 1))
        if (moved["phase"], moved.get("step")) != (state["phase"], state.get("step")):
            self.frozen[node] = f"rollout of {node} moved to {ro.canary_weight(spec, moved):g} % on the canary"
            out.event("rollout_step", node=node, phase=moved["phase"], step=int(moved.get("step", 0)) + 1,
                      weight=ro.canary_weight(spec, moved), canary=moved["canary"]["ref"])
        elif not state["canary_ready"]:
            self.frozen[node] = f"rollout of {node}: the canary is still getting its replicas"
        return moved

    def _judge(self, node: str, spec: RolloutSpec, state: dict, template, seen, now: float,
               out: Decisions) -> dict:
        """The window since the baseline: ended after `interval`, or early once enough samples show a failure."""
        counters, tracks = self._counters(template, node, seen)
        if counters is None:
            return state
        base = traffic.Counters.from_dict(state.get("baseline"))
        if base is None or state.get("window_started") is None:
            return {**state, "baseline": counters.to_dict(), "window_started": now}
        stats, started = traffic.window(counters, base, tracks), float(state["window_started"])
        compare = ro.canary_weight(spec, state) < 100
        verdict = ro.analyze(spec.analysis, stats[traffic.CANARY], stats[traffic.STABLE], compare)
        due = now - started >= spec.analysis.interval
        if not due and verdict.status != ro.FAIL:
            return state
        state = {**ro.record_window(spec, state, verdict, now), "baseline": counters.to_dict(), "window_started": now}
        out.event("rollout_analysis", node=node, verdict=verdict.status, reasons=verdict.reasons,
                  values=verdict.values, weight=ro.canary_weight(spec, state), failures=state.get("failures", 0),
                  window_s=round(now - started, 3))
        return state

    def _counters(self, template, node: str, seen) -> tuple[traffic.Counters | None, dict[str, str]]:
        """The router's counters for the node's servers now (None without a router), and each server's track."""
        router = self._router_of(template, node, seen.records)
        if router is None:
            return None, {}
        tracks, urls = {}, {}
        for track, name in ((traffic.STABLE, node), (traffic.CANARY, canary_node(node))):
            for rec in routed_instances(seen.records, name):
                tracks[server_name(rec.node, rec.index)] = track
                url = instance_metrics_url(rec.attributes or {})
                if url:
                    urls[server_name(rec.node, rec.index)] = url
        try:
            stats = HaproxyAdmin(router.attributes["admin_socket"]).server_stats(router.attributes["backend"])
        except Exception:   # the router is restarting: this pass has no window
            return None, tracks
        self.scraper.scrape(urls)
        return traffic.read_counters(stats, dict(self.scraper.current)), tracks

    def _serving(self, template, node: str, records) -> tuple[list, list]:
        """The stable and canary instances that can take requests now: ready, and up in the router (a server it
        has just been given is not until its first health check passes; weight on it would answer 503)."""
        stable, canary = routed_instances(records, node), routed_instances(records, canary_node(node))
        router = self._router_of(template, node, records)
        if router is None:
            return stable, canary
        try:
            stats = HaproxyAdmin(router.attributes["admin_socket"]).server_stats(router.attributes["backend"])
        except Exception:
            return stable, canary
        up = {name for name, st in stats.items() if st.status.startswith("UP") or st.status in ("no check", "DRAIN")}

        def serving(recs: list) -> list:
            return [r for r in recs if server_name(r.node, r.index) in up]
        return serving(stable), serving(canary)

    @staticmethod
    def _router_of(template, node: str, records):
        for route in routes(template):
            if route.target == node:
                ready = [r for r in routed_instances(records, route.router) if (r.attributes or {}).get("admin_socket")]
                if ready:
                    return ready[0]
        return None

    def _scaling_in_flight(self, node: str, records, counts: dict) -> str | None:
        """Why the node's count is still changing (the rollout then leaves its weights alone), or None."""
        mine = [r for r in records if r.node == node]
        busy = [r.key for r in mine if r.status in IN_FLIGHT]
        ready = sum(1 for r in mine if r.status == InstanceStatus.READY)
        if busy or ready != counts.get(node, ready):
            return f"{node} is scaling ({ready} ready of {counts.get(node, ready)}): the rollout holds its weights"
        return None

    # -- abort and promotion ------------------------------------------------------------------------------------
    def _aborted(self, node: str, spec: RolloutSpec, state: dict, now: float, out: Decisions, kept: int) -> dict:
        """Weight 0 at once (this pass's router sync), an event, the webhook, the version marked bad; the canary's
        instances are kept `keep_failed` for inspection, and that version is never rolled out again by itself."""
        canary = state["canary"]
        state = {**state, "kept": max(1, kept), "keep_until": now + spec.keep_failed,
                 "failed": sorted(set(state.get("failed") or []) | {canary["ref"]})}
        out.event("rollout_aborted", node=node, canary=canary["ref"], stable=state["stable"]["ref"],
                  reasons=state["reasons"], weight=0, kept_s=spec.keep_failed)
        self._notify(spec, node, "rollout_aborted", state)
        if not self.dry_run:
            try:
                pinning.registry_for(self.store.home).mark(canary["name"], canary["version"], "bad",
                                                           "rollout aborted: " + "; ".join(state["reasons"]))
            except Exception as exc:
                out.event("rollout_error", node=node, error=f"could not mark {canary['ref']} bad: {exc}")
        return state

    def _promote(self, node: str, spec: RolloutSpec, state: dict, template, seen, counts, now: float,
                 out: Decisions) -> dict:
        """The canary serves everything; once it has its full count the stable is pinned to its version and
        replaced (drained first); once the stable runs it, weights go back to the stable node, the canary leaves."""
        canary, stable = state["canary"], state["stable"]
        self.frozen[node] = f"rollout of {node} is promoting {canary['ref']}"
        if stable["ref"] != canary["ref"]:
            if self._live < counts.get(canary_node(node), 1):
                return state
            out.event("rollout_promoting", node=node, version=canary["ref"], previous=stable["ref"],
                      reason="the canary serves all requests while the stable instances are replaced")
            return {**state, "stable": canary, "previous": stable, "promoted_at": now}
        if not self._stable_runs(node, template, seen, counts):
            return state
        out.event("rollout_promoted", node=node, version=canary["ref"], previous=(state.get("previous") or {})
                  .get("ref"), rollback=bool(state.get("rollback")))
        finished = {**state, "phase": ro.PROMOTING + "_done"}
        self._notify(spec, node, "rollout_promoted", finished)
        if not self.dry_run and not state.get("rollback"):
            try:
                pinning.registry_for(self.store.home).mark(canary["name"], canary["version"], "good",
                                                           "promoted by a rollout")
            except Exception:
                pass
        return ro.settle(state, "rolled back" if state.get("rollback") else "promoted", now)

    def _stable_runs(self, node: str, template, seen, counts: dict) -> bool:
        """Whether every stable instance is ready on the pinned version (its spec matches the view)."""
        mine = routed_instances(seen.records, node)
        return len(mine) >= counts.get(node, 0) and len(self._current(template, node, mine, seen, counts)) == len(mine)

    def _current(self, template, node: str, recs: list, seen, counts: dict) -> list:
        """Those of `recs` built from the node's definition in this pass's view (the version it should run): an
        instance left by an earlier rollout, or not replaced yet, is not."""
        from orchestrator.plan import attribute_view, make_resolver, node_properties, spec_hash
        if node not in template.node_templates:
            return []
        try:
            resolver = make_resolver(template, self.inputs, attribute_view(counts, self._infra, seen.records))
            want = spec_hash(template, node, node_properties(template, node, resolver),
                             template.driver_name(node) or "?")
        except Exception:
            return []
        return [r for r in recs if r.spec_hash == want]

    # -- 3. the routers --------------------------------------------------------------------------------------------
    def _set_weights(self, node: str, spec: RolloutSpec, state: dict, stable: list, canary: list, template,
                     records: list, out: Decisions) -> None:
        """The routers' weights for this node (servers_for / weights_for at the end of the pass). Without a router
        (a Kubernetes Service over the stable and canary Deployments) the split is the replica ratio: the weight
        really achieved is reported when it differs from the one asked."""
        phase = state.get("phase", ro.IDLE)
        weight = ro.canary_weight(spec, state)
        slots = traffic.split(stable, canary if phase != ro.IDLE else [], weight)
        self.weights[node] = {s.name: s.weight for s in slots}
        if phase in (ro.IDLE, ro.ABORTED):
            return
        if self._router_of(template, node, records) is None:
            ready = (len(routed_instances(records, node)), len(routed_instances(records, canary_node(node))))
            achieved, by = (round(100.0 * ready[1] / sum(ready), 2) if sum(ready) else 0.0), "replica ratio"
        else:
            achieved, by = (traffic.achieved(slots) if canary else weight), "router weights"
        if abs(achieved - weight) > 0.5:
            out.event("rollout_weight", once=f"rollout-weight:{node}", node=node, weight=weight,
                      weight_achieved=achieved, by=by)

    def servers_for(self, records: list, node: str) -> list:
        """A routed node's servers: its ready instances, and its canary's while a rollout runs."""
        servers = routed_instances(records, node)
        if node in self.weights:
            servers += routed_instances(records, canary_node(node))
        return servers

    def weights_for(self, router: str, node: str, servers: list) -> dict[str, int] | None:
        return self.weights.get(node)

    def hold_scaling(self, out: Decisions, counts: dict) -> None:
        """The autoscaler's decisions for a node whose rollout is moving weights this pass are held."""
        kept = []
        for action in out.scaled:
            why = self.frozen.get(action["node"])
            if why is None:
                kept.append(action)
                continue
            counts[action["node"]] = action["from"]
            out.event("decision", node=action["node"], policy=action["policy"], current=action["from"],
                      desired=action["desired"], action="hold", reason=f"{action['reason']}; held: {why}")
        out.scaled = kept

    def _notify(self, spec: RolloutSpec, node: str, kind: str, state: dict) -> None:
        if not spec.webhook or self.dry_run:
            return
        payload = {"event": kind, "infrastructure": self.name, "node": node, "ts": time.time(),
                   "stable": (state.get("stable") or {}).get("ref"), "canary": (state.get("canary") or {}).get("ref"),
                   "reasons": state.get("reasons") or [], "last_verdict": state.get("last_verdict")}
        notify(spec.webhook, json.loads(json.dumps(payload, default=str)), lambda url, error: self.store.journal(
            self.name, "webhook_failed", None, url=url, error=error))
