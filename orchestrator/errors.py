"""The refusals every layer of the orchestrator raises for a user's request (the CLI prints one line, the API a 4xx)."""


class UserError(Exception):
    """A refusal caused by the user's request (not a descriptor diagnostic): printed as one line, exit 1."""

    code = "REFUSED"


class UsageError(UserError):
    """The command was called wrongly (a missing argument, options that exclude each other): the CLI exits 64."""

    code = "USAGE"


class NotFound(UserError):
    """The named infrastructure (or node, operation) does not exist: the API answers 404."""
