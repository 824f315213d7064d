"""The one error type the optimizer raises for problems a user can cause (bad data, bad options)."""


class OptimizerInputError(ValueError):
    """A user-caused problem, carrying one clear sentence meant to be shown as is."""


class OptimizerUsageError(OptimizerInputError):
    """The command was called wrongly (e.g. no sample source named): the CLI exits 64 like every usage mistake."""
