"""The `terraform` driver: a node carries a Terraform configuration; each instance is one working directory applied.

The configuration is inline (`configuration`: HCL text, or a mapping written as main.tf.json) or
a module directory (`module`, relative to the descriptor, whose *.tf / *.tf.json files are copied);
`variables` become terraform.tfvars.json. Strato runs init / apply / destroy through
python-terraform in `INFRA_DIR/terraform/NODE.INDEX/`, with the state kept there, and the
Terraform outputs become the instance's attributes. The working directory carries the instance
key (strato.json), so a `find` after a crash reads that directory's state and adopts it.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import time

from drivers.base import Driver, DriverError, InstanceSpec, Observed, ObservedStatus
from drivers.common import optional_module, strato_home

BACKEND = "terraform"
MARKER = "strato.json"
INSTALL_HINT = ("install Terraform (https://developer.hashicorp.com/terraform/install, e.g. the "
                "hashicorp apt repository: apt-get install terraform) or put the binary on PATH")


def terraform_binary() -> str:
    found = shutil.which(os.environ.get("STRATO_TERRAFORM", "terraform"))
    if not found:
        raise DriverError(f"the terraform binary was not found: {INSTALL_HINT}", backend=BACKEND)
    return found


def _terraform(work_dir: str):
    terraform = optional_module("python_terraform", "the terraform driver needs python-terraform", "terraform",
                                BACKEND)
    return terraform.Terraform(working_dir=work_dir, terraform_bin_path=terraform_binary())


def _error_lines(text: str) -> str:
    """Terraform's `Error:` blocks in one line (its warnings and box drawing left out)."""
    lines, keep = [], False
    for raw in text.splitlines():
        line = raw.strip().lstrip("│╷╵").strip()
        if line.startswith("Error:"):
            keep = True
        elif line.startswith("Warning:"):
            keep = False
        if keep and line:
            lines.append(line)
    return " ".join(lines)[:600] or " ".join(text.split())[-400:]


def work_dir_for(spec: InstanceSpec) -> str:
    return os.path.join(spec.infra_dir, "terraform", f"{spec.node}.{spec.index}")


class TerraformDriver(Driver):
    name = BACKEND
    # A configuration is code: local-exec provisioners, external data sources, file() and module sources all
    # run or read on this machine, at apply and (destroy-time provisioners) at destroy alike.
    runs_on_server_host = "runs Terraform on this machine (local-exec, file() and modules run and read here)"
    path_properties = ("module",)

    @classmethod
    def host_code(cls, properties: dict, deleting: bool = False) -> str:
        return cls.runs_on_server_host

    def _run(self, work_dir: str, log_path: str, command: str, *args, timeout: float, **flags) -> str:
        """One terraform sub-command (non-interactive, no colour); its output goes to the instance log."""
        from python_terraform import IsFlagged
        tf = _terraform(work_dir)
        # python-terraform builds the command line; it is run here because its runner has no timeout (and its
        # non-blocking mode passes `-synchronous` on to terraform).
        argv = tf.generate_cmd_string(command, *args, input=False, no_color=IsFlagged, **flags)
        proc = subprocess.Popen(argv, cwd=work_dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise DriverError(f"terraform {command} in {work_dir} did not finish within {timeout:g} s",
                              backend=BACKEND) from None
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        with open(log_path, "a") as log:
            log.write(f"--- strato: terraform {command}\n{out}{err}")
        if proc.returncode != 0:
            raise DriverError(f"terraform {command} failed in {work_dir}: {_error_lines(err or out)} "
                              f"(log: {log_path})", backend=BACKEND)
        return out

    def _write(self, spec: InstanceSpec, work_dir: str) -> None:
        props = spec.properties
        config, module = props.get("configuration"), props.get("module")
        if bool(config) == bool(module):
            raise DriverError(f"node '{spec.node}': give exactly one of `configuration` (inline HCL or a mapping) "
                              "and `module` (a directory)", backend=BACKEND)
        os.makedirs(work_dir, exist_ok=True)
        for old in glob.glob(os.path.join(work_dir, "*.tf")) + glob.glob(os.path.join(work_dir, "*.tf.json")):
            os.unlink(old)
        if isinstance(config, dict):
            with open(os.path.join(work_dir, "main.tf.json"), "w") as fh:
                json.dump(config, fh, indent=1)
        elif isinstance(config, str):
            with open(os.path.join(work_dir, "main.tf"), "w") as fh:
                fh.write(config)
        elif config:
            raise DriverError(f"node '{spec.node}': `configuration` must be HCL text or a mapping", backend=BACKEND)
        else:
            src = os.path.join(spec.descriptor_dir, str(module))
            files = glob.glob(os.path.join(src, "*.tf")) + glob.glob(os.path.join(src, "*.tf.json"))
            if not files:
                raise DriverError(f"node '{spec.node}': the module {src} holds no *.tf or *.tf.json file",
                                  backend=BACKEND)
            for f in files:
                shutil.copy(f, work_dir)
        with open(os.path.join(work_dir, "terraform.tfvars.json"), "w") as fh:
            json.dump(dict(props.get("variables") or {}), fh)
        with open(os.path.join(work_dir, MARKER), "w") as fh:
            json.dump({"key": spec.key, "node": spec.node, "index": spec.index}, fh)

    def start(self, spec: InstanceSpec) -> dict:
        terraform_binary()  # a clear error before anything is written
        work_dir = work_dir_for(spec)
        log_path = os.path.join(spec.infra_dir, "logs", f"{spec.node}.{spec.index}.log")
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        self._write(spec, work_dir)
        return {"key": spec.key, "work_dir": work_dir, "log": log_path,
                "timeout": min(float(spec.properties.get("timeout") or spec.timeout), spec.timeout)}

    def wait_ready(self, handle: dict, spec: InstanceSpec) -> dict:
        started = time.monotonic()
        timeout = float(handle["timeout"])
        self._run(handle["work_dir"], handle["log"], "init", timeout=timeout)
        from python_terraform import IsFlagged
        self._run(handle["work_dir"], handle["log"], "apply", timeout=max(1.0, timeout - (time.monotonic() - started)),
                  auto_approve=IsFlagged)
        return handle

    def update(self, handle: dict, spec: InstanceSpec) -> dict | None:
        """Terraform converges in place: rewrite the configuration and apply it again in the same directory."""
        if handle.get("work_dir") != work_dir_for(spec):
            return None
        self._write(spec, handle["work_dir"])
        return self.wait_ready(handle, spec)

    @staticmethod
    def _state(work_dir: str) -> dict | None:
        try:
            with open(os.path.join(work_dir, "terraform.tfstate")) as fh:
                return json.load(fh)
        except (OSError, ValueError):
            return None

    def observe(self, handle: dict) -> Observed:
        state = self._state(handle["work_dir"])
        if state is None:
            return Observed(ObservedStatus.MISSING, {}, f"no Terraform state in {handle['work_dir']}")
        outputs = {name: out.get("value") for name, out in (state.get("outputs") or {}).items()
                   if not out.get("sensitive")}
        resources = [r for r in state.get("resources") or [] if r.get("mode") == "managed"]
        attrs = {**outputs, "work_dir": handle["work_dir"], "resources": len(resources), "backend": BACKEND}
        if not resources and not outputs:
            return Observed(ObservedStatus.MISSING, attrs, "the Terraform state holds no resources")
        return Observed(ObservedStatus.RUNNING, attrs)

    def find(self, key: str, spec: InstanceSpec | None = None) -> dict | None:
        if spec is not None:
            dirs = [work_dir_for(spec)]
        else:  # only the key is known (a destroy): look through this state home's working directories
            dirs = glob.glob(os.path.join(strato_home(), "infrastructures", "*", "terraform", "*"))
        for work_dir in dirs:
            try:
                with open(os.path.join(work_dir, MARKER)) as fh:
                    if json.load(fh).get("key") != key:
                        continue
            except (OSError, ValueError):
                continue
            if self._state(work_dir) is None:
                continue
            infra_dir = os.path.dirname(os.path.dirname(work_dir))
            return {"key": key, "work_dir": work_dir, "adopted": True, "timeout": spec.timeout if spec else 600.0,
                    "log": os.path.join(infra_dir, "logs", os.path.basename(work_dir) + ".log")}
        return None

    def delete(self, handle: dict) -> None:
        work_dir = handle["work_dir"]
        if not os.path.isdir(work_dir):
            return
        if self._state(work_dir) is not None:
            from python_terraform import IsFlagged
            os.makedirs(os.path.dirname(handle["log"]), exist_ok=True)
            if not os.path.isdir(os.path.join(work_dir, ".terraform")):
                self._run(work_dir, handle["log"], "init", timeout=float(handle.get("timeout") or 600))
            self._run(work_dir, handle["log"], "destroy", timeout=float(handle.get("timeout") or 600),
                      auto_approve=IsFlagged)
        shutil.rmtree(work_dir, ignore_errors=True)
