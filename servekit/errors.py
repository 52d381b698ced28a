"""Errors the CLI turns into one clear message and an exit code (never a traceback).

Exit codes (DESIGN.md): 0 success, 1 the thing checked failed, 2 the user's input is wrong,
3 the environment is missing something.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3


class ServekitError(Exception):
    exit_code = EXIT_FAILED


class UserError(ServekitError):
    """The user's input is wrong: names the file, the dotted path, what was given and what is allowed."""

    exit_code = EXIT_USAGE

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        path: str | None = None,
        given: object = None,
        allowed: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.path = path
        self.given = given
        self.allowed = allowed
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = ": ".join(p for p in (self.file, self.path) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.given is not None:
            text += f" (given: {self.given!r})"
        if self.allowed:
            text += f"; allowed: {self.allowed}"
        return text


class EnvironmentMissing(ServekitError):
    """A tool, credential or file the command needs is not there."""

    exit_code = EXIT_ENVIRONMENT


class CheckFailed(ServekitError):
    """The thing checked failed (nothing fits, SLA missed, policy violated)."""

    exit_code = EXIT_FAILED


def _dotted(loc: Iterable[int | str], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def from_validation_error(err: ValidationError, *, file: str | Path, prefix: str = "") -> UserError:
    """One UserError naming the first problem (and counting the rest) of a pydantic error."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    msg = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    if first["type"] == "extra_forbidden":
        msg = "unknown key (a typo?)"
        given = None
    elif first["type"] == "missing":
        given = None
    elif isinstance(given, dict | list):
        given = None  # a whole mapping is noise; the path says where
    more = len(errors) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return UserError(msg, file=file, path=_dotted(loc, prefix) or None, given=given)
