"""The ``servekit`` command.

Each module in this package adds its own commands through ``register(app)``, so one command
lives in one file. Errors derived from :class:`servekit.errors.ServekitError` become one line on
stderr and their exit code (2 for bad input, 1 for a failed check, 3 for a missing environment);
nothing the user can cause prints a traceback.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from servekit.cli._common import run_app

app = typer.Typer(
    name="servekit",
    help="Size, price, plan, audit and SLA-test vLLM on your own AWS GPUs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")):
    importlib.import_module(f"{__name__}.{_mod}").register(app)


def main() -> None:
    sys.exit(run_app(app))
