"""`servekit preflight --stack S`: read-only AWS checks that the account can get the stack's GPUs.

Exit codes: 0 every check passed (warnings allowed); 1 at least one check failed - one message per failing
check on stderr; 2 bad stack file or flags; 3 no usable AWS credentials (or AWS unreachable).
``AWS_ENDPOINT_URL`` points every client elsewhere (moto in the tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from servekit.cli._common import console, err_console, print_json
from servekit.cli.plan import stacks_dir
from servekit.errors import CheckFailed, UserError
from servekit.preflight import DEFAULT_WINDOW_DAYS, PreflightReport, block_hours_for, make_clients, run_preflight
from servekit.stackfile import resolve_stack

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def _print(report: PreflightReport) -> None:
    t = Table(title=f"Preflight {report.stack} ({report.region}, account {report.account})", title_justify="left")
    for col in ("check", "subject", "result", "detail"):
        t.add_column(col, overflow="fold")
    for c in report.checks:
        t.add_row(c.id, c.subject, f"[{STYLE[c.status]}]{c.status}[/]", c.message)
    console.print(t)


def preflight(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
    block_days: Annotated[int | None, typer.Option(
        help="Also list Capacity Block offerings of this many days for models on eligible types.")] = None,
    window_days: Annotated[int, typer.Option(
        min=1, help="An ODCR must not end within this many days.")] = DEFAULT_WINDOW_DAYS,
    refresh_prices: Annotated[Path | None, typer.Option(
        "--refresh-prices", help="Also read live on-demand prices (Price List API) and write them, dated, to "
        "this YAML file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check the AWS account for the stack: identity, region, offerings, vCPU quotas, reservations, EKS version.

    Exits 1 when a check fails, 3 without AWS credentials.
    """
    hours = None
    if block_days is not None:
        try:
            hours = block_hours_for(block_days)
        except ValueError as e:
            raise UserError(str(e), path="--block-days", given=block_days) from None
    resolved = resolve_stack(stack, stacks_dir=stacks_dir())
    clients = make_clients(resolved.spec.region)
    with err_console.status("preflight") as status:
        report = run_preflight(resolved.spec, resolved.placements, clients, block_hours=hours,
                               window_days=window_days, progress=lambda s: status.update(f"preflight: {s}"),
                               price_file=refresh_prices)
    if as_json:
        print_json(report.to_json())
    else:
        _print(report)
    if report.failures:
        raise CheckFailed("\n".join(f"{c.id} {c.subject}: {c.message}" for c in report.failures))


def register(app: typer.Typer) -> None:
    app.command("preflight")(preflight)
