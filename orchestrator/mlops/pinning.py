"""Which model version each model server runs: the pin kept in state, and the env and placeholders it gives the server.

A model server names its model by reference (`iris@champion`); the version it runs is pinned in the rollout's
state (policy_state, policy id "rollout"), so an alias that moves never blind-replaces the running servers: the
rollout controller decides when the new version goes live. The first build pins what the reference resolves to
when the server is first created (after its dependencies, so a trainer that pushes the model runs first).
"""

from __future__ import annotations

import os
from typing import Any

POLICY = "rollout"                   # the policy_state id of a model server's rollout (and pin)
ENV_PATH, ENV_VERSION, ENV_NAME = "STRATO_MODEL_PATH", "STRATO_MODEL_VERSION", "STRATO_MODEL_NAME"


class ModelPinError(Exception):
    """A model reference that cannot be resolved (one sentence, with the registry's code)."""


def is_model_server(types, type_name: str) -> bool:
    """A node type that takes `model` and `rollout` (strato.nodes.ai.ModelServer, its Kubernetes sibling, ...)."""
    try:
        props = types.resolved(type_name).properties
    except (LookupError, AttributeError):
        return False
    return "model" in props and "rollout" in props


def registry_for(home: str):
    """The model registry of a state home ($STRATO_HOME/models)."""
    from orchestrator.mlops.registry import ModelRegistry   # h20-registry's module, read only when a model is named
    return ModelRegistry(os.path.join(home, "models"))


def version_dict(version) -> dict:
    """A registry ModelVersion as the rollout state keeps it (plain JSON)."""
    return {"name": version.name, "version": int(version.version), "ref": version.ref, "path": version.path,
            "digest": version.digest}


def resolve(home: str, ref: str) -> dict:
    """The version a reference names now, as a dict; ModelPinError saying why when it names none."""
    try:
        return version_dict(registry_for(home).resolve(ref))
    except ImportError as exc:
        raise ModelPinError(f"model '{ref}': the model registry is not available ({exc})") from None
    except Exception as exc:   # RegistryError(code, message) and the like
        code = getattr(exc, "code", None)
        raise ModelPinError(f"model '{ref}': {code + ': ' if code else ''}{exc}") from None


def with_model(props: dict, version: dict) -> dict:
    """A model server's properties running `version`: env STRATO_MODEL_*, {model_path} {model_version} filled in
    command and env; `model` and `rollout` dropped (changing the rollout block never restarts a server)."""
    subs = {"{model_path}": str(version["path"]), "{model_version}": str(version["ref"])}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for placeholder, text in subs.items():
                value = value.replace(placeholder, text)
            return value
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    out = {k: v for k, v in props.items() if k not in ("model", "rollout")}
    if "command" in out:
        out["command"] = fill(out["command"])
    env = out.get("env")
    env = {str(k): fill(v) for k, v in env.items()} if isinstance(env, dict) else {}
    env.update({ENV_PATH: str(version["path"]), ENV_VERSION: str(version["ref"]), ENV_NAME: str(version["name"])})
    out["env"] = env
    return out


def pinned(store, infra: str, node: str) -> dict | None:
    """The stable version pinned for a model server node, if any."""
    state = store.policy_states(infra).get((POLICY, node)) or {}
    return state.get("stable")


def pin_at_start(store, infra: str, node: str, ref: str) -> dict:
    """The version a model server's new instance runs: the pinned stable one, or (first build) what `ref`
    resolves to now, pinned from here on."""
    version = pinned(store, infra, node)
    if version is not None:
        return version
    version = resolve(store.home, ref)
    state = store.policy_states(infra).get((POLICY, node)) or {}
    store.save_policy_state(infra, POLICY, node, {**state, "stable": version, "phase": state.get("phase", "idle")})
    store.journal(infra, "model_pinned", None, node=node, model=ref, version=version["ref"])
    return version
