"""The project's layering, read from the source with `ast` (no module is imported): no import cycle among the
project's modules, no import of orchestrator/ from a lower layer, short functions in orchestrator/, and no
reaching into another module's private names of service, cost or maintain."""

from __future__ import annotations

import ast
import os
from functools import lru_cache

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("orchestrator", "descriptors", "drivers", "policies", "optimizer")
LOWER_LAYERS = ("drivers", "descriptors", "policies", "optimizer")
MAX_FUNCTION_LINES = 70
PRIVATE_OWNERS = ("service", "cost", "maintain")


@lru_cache(maxsize=1)
def modules() -> dict[str, str]:
    """Dotted module name -> path relative to the project root, for every .py file of the packages."""
    found = {}
    for package in PACKAGES:
        for root, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(root, name), ROOT)
                    dotted = rel[:-3].replace(os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = rel
    return found


@lru_cache(maxsize=None)
def tree(rel: str) -> ast.Module:
    with open(os.path.join(ROOT, rel)) as fh:
        return ast.parse(fh.read(), rel)


def resolve(name: str, current: str, level: int) -> str | None:
    """The project module an import names (a name inside a module resolves to the module), or None."""
    if level:
        base = current.split(".")
        is_package = modules()[current].endswith("__init__.py")
        base = base[:len(base) - level + (1 if is_package else 0)]
        name = ".".join(base + ([name] if name else []))
    elif name.split(".")[0] not in PACKAGES:
        return None
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int]]:
    """(imported project module, line) of every import in the module, at module level or inside a function."""
    found = []
    for node in ast.walk(tree(modules()[module])):
        if isinstance(node, ast.Import):
            names = [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = (node.module + ".") if node.module else ""
            names = [(node.module or "", node.level)] + [(prefix + alias.name, node.level) for alias in node.names]
        else:
            continue
        for name, level in names:
            target = resolve(name, module, level)
            if target and target != module and (target, node.lineno) not in found:
                found.append((target, node.lineno))
    return found


def import_cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each naming its modules in a cycle."""
    edges = {m: sorted({t for t, _ in imports(m)}) for m in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            # a module importing its own package's __init__ re-exports is not a design cycle
            if len(component) > 1 and not all(c in PACKAGES for c in component):
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def describe_cycle(component: list[str]) -> str:
    """Each import that keeps the component together, as file:line -> module."""
    members = set(component)
    links = [f"{modules()[m]}:{line} imports {t}" for m in component for t, line in imports(m) if t in members]
    return "import cycle among " + ", ".join(component) + ":\n    " + "\n    ".join(links)


def test_no_import_cycle():
    problems = [describe_cycle(c) for c in import_cycles()]
    assert not problems, "\n".join(problems)


def test_lower_layers_never_import_orchestrator():
    problems = [f"{rel}:{line} imports {target}" for module, rel in modules().items()
                if module.split(".")[0] in LOWER_LAYERS
                for target, line in imports(module) if target.split(".")[0] == "orchestrator"]
    assert not problems, "a lower layer imports orchestrator/:\n" + "\n".join(problems)


def test_orchestrator_functions_are_short():
    problems = []
    for module, rel in modules().items():
        if module.split(".")[0] != "orchestrator":
            continue
        for node in ast.walk(tree(rel)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    problems.append(f"{rel}:{node.lineno} {node.name} is {length} lines")
    assert not problems, f"functions longer than {MAX_FUNCTION_LINES} lines:\n" + "\n".join(problems)


def private_uses(module: str) -> list[str]:
    """`service._x` (or cost/maintain) in a module other than its owner, however the owner was imported."""
    rel = modules()[module]
    owners = {}  # local name -> the owning module, e.g. {"service": "orchestrator.service"}
    found = []
    for node in ast.walk(tree(rel)):
        if isinstance(node, ast.ImportFrom) and node.module == "orchestrator":
            owners.update({a.asname or a.name: f"orchestrator.{a.name}"
                           for a in node.names if a.name in PRIVATE_OWNERS})
        elif isinstance(node, ast.ImportFrom) and (node.module or "").rpartition(".")[2] in PRIVATE_OWNERS:
            found += [f"{rel}:{node.lineno} imports {a.name} from {node.module}" for a in node.names
                      if a.name.startswith("_") and node.module != module]
        elif isinstance(node, ast.Import):
            owners.update({a.asname: a.name for a in node.names
                           if a.asname and a.name.rpartition(".")[2] in PRIVATE_OWNERS})
    for node in ast.walk(tree(rel)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        owner = ast.unparse(node.value)
        owner = owners.get(owner, owner)
        if owner.rpartition(".")[2] in PRIVATE_OWNERS and owner in modules() and owner != module:
            found.append(f"{rel}:{node.lineno} uses {ast.unparse(node)}")
    return found


def test_no_private_access_to_service_cost_maintain():
    problems = [p for module in modules() for p in private_uses(module)]
    assert not problems, "another module's private name used:\n" + "\n".join(problems)


# -- the checks themselves, on small made-up trees ---------------------------------------------------------------
def test_checks_see_function_level_imports_and_name_the_line(tmp_path, monkeypatch):
    for rel, text in {"orchestrator/__init__.py": "", "orchestrator/a.py": "def f():\n    from orchestrator import b\n",
                      "orchestrator/b.py": "import orchestrator.a\n", "drivers/__init__.py": "",
                      "drivers/x.py": "def g():\n    from orchestrator.a import f\n",
                      "orchestrator/c.py": "from orchestrator import service\nservice._hidden()\n",
                      "orchestrator/service.py": ""}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setitem(globals(), "ROOT", str(tmp_path))
    modules.cache_clear()
    tree.cache_clear()
    try:
        assert import_cycles() == [["orchestrator.a", "orchestrator.b"]]
        assert "orchestrator/a.py:2 imports orchestrator.b" in describe_cycle(["orchestrator.a", "orchestrator.b"])
        assert imports("drivers.x") == [("orchestrator.a", 2)]
        assert private_uses("orchestrator.c") == ["orchestrator/c.py:2 uses service._hidden"]
    finally:
        modules.cache_clear()
        tree.cache_clear()
