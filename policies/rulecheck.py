"""The scaling rule's static check: what the sandbox never runs (imports, dunders, open, eval ...), found by parsing alone.

Pure (it imports `ast` and nothing of Strato but PolicyError), so that `strato validate`
(descriptors/) runs the very check the loop's sandbox runs, and a rule the loop would refuse
is a descriptor error with its position instead of a surprise at run time.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from policies.base import PolicyError

MAX_RULE_CHARS = 20000
# Callables that would read files, evaluate code or reach objects' internals.
FORBIDDEN_CALLS = frozenset({"open", "eval", "exec", "compile", "__import__", "getattr", "setattr", "delattr",
                             "globals", "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "dir",
                             "type", "memoryview", "object", "super", "hasattr"})
_FORBIDDEN_NODES = (ast.Global, ast.Nonlocal, ast.AsyncFunctionDef, ast.Await, ast.Yield, ast.YieldFrom)


@dataclass(frozen=True)
class RuleProblem:
    """One thing the sandbox refuses: a sentence, and where in the rule (1-based line and column; 0 unknown)."""

    code: str       # RULE_SYNTAX, RULE_REFUSED or RULE_TOO_LONG
    reason: str
    line: int = 0
    col: int = 0

    def sentence(self) -> str:
        """The reason with its line, as the sandbox has always said it."""
        return f"{self.reason} (line {self.line})" if self.line else self.reason


class RuleRefused(PolicyError):
    """A rule the static check refuses; `problems` lists every refusal, first in the rule first."""

    def __init__(self, problems: list[RuleProblem]):
        self.problems = problems
        super().__init__(problems[0].sentence())


def rule_problems(rule: object) -> list[RuleProblem]:
    """Every refusal of the static check, in the rule's order; [] for a rule the sandbox may run."""
    return _examine(rule)[1]


def _examine(rule: object) -> tuple[ast.Module | None, list[RuleProblem]]:
    if not isinstance(rule, str) or not rule.strip():
        return None, [RuleProblem("RULE_REFUSED", "the scaling rule is empty")]
    if len(rule) > MAX_RULE_CHARS:
        return None, [RuleProblem("RULE_TOO_LONG", f"the scaling rule is longer than {MAX_RULE_CHARS} characters")]
    try:
        tree = ast.parse(rule, "<scaling_rule>")
    except SyntaxError as error:
        return None, [RuleProblem("RULE_SYNTAX", f"the scaling rule has a syntax error: {error.msg}",
                                  error.lineno or 0, error.offset or 0)]
    found = [problem for node in ast.walk(tree) if (problem := _refusal(node)) is not None]
    return tree, sorted(found, key=lambda p: (p.line, p.col))


def _refusal(node: ast.AST) -> RuleProblem | None:
    reason = None
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        reason = "the scaling rule may not import modules"
    elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
        reason = f"the scaling rule may not reach the private or dunder attribute '{node.attr}'"
    elif isinstance(node, ast.Name) and node.id.startswith("__"):
        reason = f"the scaling rule may not use the dunder name '{node.id}'"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
        why = "no file access" if node.func.id in ("open", "input") else "no code evaluation or introspection"
        reason = f"the scaling rule may not call {node.func.id}() ({why})"
    elif isinstance(node, _FORBIDDEN_NODES):
        reason = f"the scaling rule may not use '{type(node).__name__.lower()}'"
    if reason is None:
        return None
    return RuleProblem("RULE_REFUSED", reason, getattr(node, "lineno", 0), getattr(node, "col_offset", -1) + 1)


def check_rule(rule: str) -> ast.Module:
    """Parse a rule and refuse what the sandbox never runs; RuleRefused (a PolicyError) says what and where."""
    tree, problems = _examine(rule)
    if problems:
        raise RuleRefused(problems)
    return tree
