"""Errors a person can act on: each carries one line that the UI and the CLI show as is."""


class RecipeError(Exception):
    """Base class; str(error) is the one-line message shown to the user."""


class BadInput(RecipeError):
    """An uploaded file or a typed value that cannot be used."""


class NotFound(RecipeError):
    """A dataset, column or row that does not exist."""


class Forbidden(RecipeError):
    """An action this identity may not take (its role, or someone else's dataset or run)."""


class QueryRejected(RecipeError):
    """A filter or WHERE expression refused before it reaches DuckDB."""


class QueryFailed(RecipeError):
    """A query DuckDB refused or interrupted (timeout, memory)."""


class Cancelled(RecipeError):
    """A run stopped on request."""


class Pruned(RecipeError):
    """A tuning trial stopped early because it was doing worse than the others at the same point."""


CANCELLED = "cancelled on request"


def first_line(error: BaseException, max_chars: int | None = None) -> str:
    """The first line of an error's message (its type's name when it says nothing): what one-line errors show."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:max_chars] if max_chars else line


def unexpected(error: BaseException) -> str:
    """The one line for an error nobody anticipated (a bug): its type and the first line of its message."""
    text = str(error).strip()
    return f"unexpected {type(error).__name__}: {text.splitlines()[0] if text else ''}"
