"""`servekit advise`: the field report's decision framework, non-interactive, backed by the kit's numbers.

Every answer is a flag; an unanswered question is reported as such. Exit code 0 (advice is not a check);
2 on bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from servekit.advise import Advice, AdviceInput, TaskKind, advise
from servekit.cli._common import check_finite, console, print_json
from servekit.tco import DEFAULT_OPS_USD_PER_MONTH, DEFAULT_OUTPUT_TOKENS


def _print(a: Advice) -> None:
    t = Table(title="Decision framework (field report)", title_justify="left")
    for col in ("#", "question", "answer", "points to", "evidence"):
        t.add_column(col, overflow="fold")
    for r in a.rules:
        t.add_row(str(r.id), r.question, r.answer, r.points_to or "-", "\n".join(r.evidence))
    console.print(t)
    by = f" (rule {a.decided_by})" if a.decided_by else ""
    console.print(f"Recommendation{by}: [bold]{a.recommendation}[/] - {a.reason}.")


def advise_command(
    data_can_leave: Annotated[bool | None, typer.Option(
        "--data-can-leave/--data-cannot-leave", help="May the data be sent to a third-party API?")] = None,
    task: Annotated[TaskKind | None, typer.Option(help="What the model does.")] = None,
    human_review: Annotated[bool | None, typer.Option(
        "--human-review/--no-human-review", help="A person checks every output.")] = None,
    monthly_api_usd: Annotated[float | None, typer.Option(min=0, help="Current API spend, $/month.")] = None,
    requests_per_day: Annotated[float | None, typer.Option(min=1, help="Request volume (runs the TCO).")] = None,
    input_tokens: Annotated[float, typer.Option(min=0, help="Mean input tokens per request.")] = 0,
    output_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per request.")] = DEFAULT_OUTPUT_TOKENS,
    fine_tune: Annotated[bool | None, typer.Option("--fine-tune/--no-fine-tune",
                                                   help="Will you fine-tune the model?")] = None,
    ops_usd_per_month: Annotated[float, typer.Option(min=0, help="Ops overhead of self-hosting, $/month.")] =
    DEFAULT_OPS_USD_PER_MONTH,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Walk the field report's decision framework: data, task, spend, fine-tuning -> a recommendation."""
    check_finite({"--monthly-api-usd": monthly_api_usd, "--requests-per-day": requests_per_day,
                  "--input-tokens": input_tokens, "--ops-usd-per-month": ops_usd_per_month})
    result = advise(AdviceInput(
        data_can_leave_network=data_can_leave, task=task, human_review=human_review, monthly_api_usd=monthly_api_usd,
        requests_per_day=requests_per_day, input_tokens=input_tokens, output_tokens=output_tokens,
        fine_tune=fine_tune, ops_usd_per_month=ops_usd_per_month))
    if as_json:
        print_json(result.to_json())
    else:
        _print(result)


def register(app: typer.Typer) -> None:
    app.command("advise")(advise_command)
