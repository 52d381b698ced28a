"""Errors the CLI turns into one clear message and an exit code (never a traceback).

Exit codes (DESIGN.md): 0 success, 1 the thing checked failed, 2 the user's input is wrong,
3 the environment is missing something.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

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


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (directly, in a list or dict, optional or annotated), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _keys_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str] | None:
    """The keys the mapping at ``loc`` accepts, as a file spells them (aliases); None if ``loc`` is not a model."""
    cls = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in cls.model_fields.items() if part in (name, f.alias)), None)
        sub = _model_in(field.annotation) if field is not None else None
        if sub is None:
            return None
        cls = sub
    return sorted(f.alias or name for name, f in cls.model_fields.items())


def from_validation_error(err: ValidationError, *, file: str | Path, prefix: str = "",
                          model: type[BaseModel] | None = None) -> UserError:
    """One UserError naming the first problem (and counting the rest) of a pydantic error; with ``model`` (the
    validated class) an unknown key also lists the keys allowed where it stands."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
    msg = first["msg"].removeprefix("Value error, ")
    given = first.get("input")
    allowed = None
    if first["type"] == "extra_forbidden":
        msg = "unknown key (a typo?)"
        given = None
        keys = _keys_at(model, loc[:-1]) if model is not None else None
        allowed = ", ".join(keys) if keys else None
    elif first["type"] == "missing":
        given = None
    elif isinstance(given, dict | list):
        given = None  # a whole mapping is noise; the path says where
    more = len(errors) - 1
    if more:
        msg += f" (and {more} more problem{'s' if more > 1 else ''})"
    return UserError(msg, file=file, path=_dotted(loc, prefix) or None, given=given, allowed=allowed)
