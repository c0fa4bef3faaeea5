"""Errors a person can act on: each carries one line that the UI and the CLI show as is."""


class RecipeError(Exception):
    """Base class; str(error) is the one-line message shown to the user."""


class BadInput(RecipeError):
    """An uploaded file or a typed value that cannot be used."""


class NotFound(RecipeError):
    """A dataset, column or row that does not exist."""


class QueryRejected(RecipeError):
    """A filter or WHERE expression refused before it reaches DuckDB."""


class QueryFailed(RecipeError):
    """A query DuckDB refused or interrupted (timeout, memory)."""


class Cancelled(RecipeError):
    """A run stopped on request."""


class Pruned(RecipeError):
    """A tuning trial stopped early because it was doing worse than the others at the same point."""


CANCELLED = "cancelled on request"
