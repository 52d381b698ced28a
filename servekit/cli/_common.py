"""Shared CLI plumbing: error handling, JSON output, the console."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import typer
from rich.console import Console

from servekit.errors import EXIT_USAGE, ServekitError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else (progress and warnings go to stderr)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def run_app(app: typer.Typer, args: list[str] | None = None) -> int:
    """Run the typer app; map our errors and click usage errors to exit codes without tracebacks."""
    try:
        app(args=args, standalone_mode=False)
    except ServekitError as e:
        err_console.print(f"[bold red]error:[/] {e}", markup=True, soft_wrap=True)
        return e.exit_code
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return EXIT_USAGE if e.exit_code == 2 else e.exit_code
    return 0
