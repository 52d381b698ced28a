"""Shared CLI plumbing: error handling, JSON output, the console."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer._click import exceptions as click_exc  # typer vendors its own click

from servekit.errors import EXIT_USAGE, ServekitError, UserError

# Wide enough that tables and explanations are not folded when output is piped or captured.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else (progress and warnings go to stderr)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def check_finite(options: dict[str, float | None]) -> None:
    """A range with only a lower bound lets 'inf' through the option parser; no figure here may be infinite."""
    for option, value in options.items():
        if value is not None and not math.isfinite(value):
            raise UserError("must be a finite number", path=option, given=value)


def check_output_file(path: Path, option: str) -> None:
    """Before any work is done: a file cannot be written where a directory is, or under a file."""
    existing = next((p for p in path.parents if p.exists()), None)
    if path.is_dir() or (existing is not None and not existing.is_dir()):
        raise UserError("cannot write a file there (it is a directory, or under a file)", path=option,
                        given=str(path))


def run_app(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the typer app; map our errors and usage errors to exit codes without tracebacks."""
    try:
        # Without standalone mode click returns a `typer.Exit`'s code instead of raising it.
        code = app(args=args, standalone_mode=False)
    except ServekitError as e:
        # The message carries what the user gave: escape it, so "[/x]" is shown, not parsed as markup.
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, soft_wrap=True, highlight=False)
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("aborted")
        return 130
    except typer.Exit as e:
        return e.exit_code
    except click_exc.ClickException as e:
        e.show()
        return EXIT_USAGE if e.exit_code == 2 else e.exit_code
    return code if isinstance(code, int) else 0
