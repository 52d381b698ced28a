"""`servekit cost --stack S`: the stack's monthly bill, line by line, and $/1M output tokens per model.

Exit codes: 0 within budget (or no budget set); 1 when the estimate exceeds
``servekit:budgetMonthlyUsd`` (the table / JSON is still printed first, then one message on stderr);
2 for a bad stack file.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from servekit.cli._common import console, print_json
from servekit.cli.plan import stacks_dir
from servekit.cost import DEFAULT_UTILIZATION, Payment, StackCost, api_prices, stack_cost
from servekit.errors import CheckFailed
from servekit.stackfile import resolve_stack


def budget_message(cost: StackCost, file: str) -> str:
    assert cost.budget_monthly_usd is not None
    over = cost.monthly_usd - cost.budget_monthly_usd
    return (f"stack {cost.stack}: estimated ${cost.monthly_usd:,.0f}/month exceeds the budget of "
            f"${cost.budget_monthly_usd:,.0f}/month by ${over:,.0f} ({file}: config.servekit:budgetMonthlyUsd)")


def _print(cost: StackCost) -> None:
    t = Table(title=f"Stack {cost.stack} ({cost.region}), {cost.hours_per_month:g} h/month", title_justify="left")
    t.add_column("item")
    t.add_column("$/month", justify="right")
    t.add_column("basis", overflow="fold")
    for line in cost.lines:
        t.add_row(line.item, f"{line.monthly_usd:,.2f}", line.basis)
    t.add_row("[bold]total[/]", f"[bold]{cost.monthly_usd:,.2f}[/]",
              "" if cost.budget_monthly_usd is None else f"budget ${cost.budget_monthly_usd:,.0f}/month")
    console.print(t)
    m = Table(title="Per model: $ per 1M output tokens (GPU node group only)", title_justify="left")
    for col in ("model", "output tok/s (all replicas)", "$/1M at 100%", "$/1M at util", "API $/1M out",
                "beats API above"):
        m.add_column(col, justify="right" if col != "model" else "left")
    for mc in cost.models:
        api = api_prices().options[mc.api].name
        m.add_row(mc.name, f"{mc.sustained_output_tokens_per_second:,.0f}", f"{mc.usd_per_million_output_tokens:,.3f}",
                  f"{mc.usd_per_million_output_tokens_at_utilization:,.3f} ({mc.utilization:.0%})",
                  f"{mc.api_usd_per_million_output_tokens:,.2f} ({api})",
                  f"{mc.break_even_utilization:.1%} utilization" if mc.break_even_utilization <= 1 else "never")
    console.print(m)
    console.print("Figures marked (U) are uncertain; prices and their sources: servekit/data/prices-aws.yaml, "
                  "instances.yaml, prices-api.yaml.")


def cost(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
    utilization: Annotated[float, typer.Option(
        min=0.01, max=1.0, help="Share of hours the replicas are busy, for $/1M tokens (default: peak sized, "
        "traffic averaging half its peak).")] = DEFAULT_UTILIZATION,
    payment: Annotated[Payment | None, typer.Option(
        help="How savings plans / reserved instances are paid (default: each model's purchase.payment).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Monthly cost of a stack: GPU node groups at their purchase option, fixed AWS costs, $/1M tokens.

    Exits 1 (after printing) when the estimate exceeds servekit:budgetMonthlyUsd.
    """
    resolved = resolve_stack(stack, stacks_dir=stacks_dir())
    result = stack_cost(resolved.spec, resolved.placements, utilization=utilization, payment=payment)
    if as_json:
        print_json(result.cli_json())
    else:
        _print(result)
    if result.over_budget:
        raise CheckFailed(budget_message(result, resolved.file))


def register(app: typer.Typer) -> None:
    app.command("cost")(cost)
