"""`servekit tco`: self-hosting on the kit's own placement against GPT-4o, Claude and a managed endpoint.

Exit codes: 0 priced; 1 the volume cannot be self-hosted (no candidate meets the SLA, or it needs more
than 64 replicas); 2 bad input.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from servekit.cli._common import check_finite, console, print_json
from servekit.errors import UserError
from servekit.spec import KvCacheDtype, PurchaseOption, Quantization, WorkloadProfile
from servekit.tco import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    DEFAULT_OPS_USD_PER_MONTH,
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_P95_SECONDS,
    PEAK_TO_AVERAGE,
    ScenarioResult,
    TcoRequest,
    TcoResult,
    check_region,
    report_scenarios,
    tco,
)
from servekit.workloads import profile


def _print_result(r: TcoResult) -> None:
    q = r.request
    t = Table(title=f"{q.requests_per_day:,.0f} requests/day, {q.input_tokens:,.0f} input + {q.output_tokens:,} "
                    f"output tokens each", title_justify="left")
    for col in ("option", "$/month", "$/request", "basis"):
        t.add_column(col, justify="right" if col.startswith("$") else "left", overflow="fold")
    for a in r.apis:
        t.add_row(a.name, f"{a.monthly_usd:,.0f}", f"{a.usd_per_request:.5f}", a.basis)
    sh = r.self_hosted
    per_req = sh.monthly_usd / (q.requests_per_day * q.days_per_month)
    t.add_row(f"Self-hosted {sh.model} ({sh.quantization.value})", f"{sh.monthly_usd:,.0f}", f"{per_req:.5f}",
              "\n".join(sh.basis))
    console.print(t)
    console.print(f"Cheapest: [bold]{r.cheapest}[/]")
    for b in r.break_even:
        console.print(f"Break-even vs {b.against}: {b.note}")
    console.print("Assumptions: " + "; ".join(r.assumptions) + ".")


def _print_scenarios(results: list[ScenarioResult]) -> None:
    for s in results:
        t = Table(title=f"Scenario {s.id}: {s.requests_per_day:,.0f} requests/day, {s.input_tokens:,.0f} in + "
                        f"{s.output_tokens} out tokens (report's cheapest: {s.report_cheapest}; kit's: "
                        f"{s.kit_cheapest})", title_justify="left")
        for col in ("option", "report $/month", "kit $/month", "kit/report", "why they differ"):
            t.add_column(col, justify="left" if col in ("option", "why they differ") else "right", overflow="fold")
        for row in s.rows:
            t.add_row(row.option, f"{row.report_usd:,.0f}" if row.report_usd is not None else "-",
                      f"{row.kit_usd:,.0f}", f"{row.ratio:.2f}" if row.ratio is not None else "-", row.explanation)
        console.print(t)


def tco_command(
    requests_per_day: Annotated[float | None, typer.Option("--requests-per-day", min=1,
                                                           help="Requests per day.")] = None,
    input_tokens: Annotated[float | None, typer.Option(
        min=0, help="Mean input tokens per request; default: the --workload profile's mean prompt "
        "(--report-scenarios: 0, the report's own basis).")] = None,
    output_tokens: Annotated[int, typer.Option(min=1, help="Output tokens per request.")] = DEFAULT_OUTPUT_TOKENS,
    model: Annotated[str, typer.Option(help="Model to self-host (see `servekit models`).")] = DEFAULT_MODEL,
    quant: Annotated[Quantization, typer.Option(help="Weight format.")] = Quantization.BF16,
    kv_fp8: Annotated[bool, typer.Option("--kv-fp8", help="FP8 KV cache.")] = False,
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="Allow only this GPU (repeatable).")] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1024, help="SLA batch per replica.")] = DEFAULT_CONCURRENCY,
    p95: Annotated[float, typer.Option(min=0.1, max=600, help="p95 end-to-end SLA, seconds.")] =
    DEFAULT_P95_SECONDS,
    workload: Annotated[WorkloadProfile, typer.Option(help="Prompt-length spread.")] = WorkloadProfile.CHAT,
    purchase: Annotated[PurchaseOption, typer.Option(help="How the GPU nodes are bought.")] =
    PurchaseOption.ON_DEMAND,
    region: Annotated[str, typer.Option(help="AWS region.")] = "us-east-1",
    ops_usd_per_month: Annotated[float, typer.Option(
        min=0, help="Ops overhead of self-hosting (engineering time, on-call), $/month.")] = DEFAULT_OPS_USD_PER_MONTH,
    peak_to_average: Annotated[float, typer.Option(
        min=1, help="Peak request rate / daily average; replicas are sized for the peak.")] = PEAK_TO_AVERAGE,
    min_replicas: Annotated[int, typer.Option(min=1, max=64, help="Replicas kept for availability.")] = 1,
    scenarios: Annotated[bool, typer.Option("--report-scenarios", help="The field report's three scenarios, "
                                            "its figures beside the kit's.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Monthly cost of a volume: GPT-4o, Claude 3.5 Sonnet, a managed open endpoint, and self-hosting; break-even.

    Exits 1 when the volume cannot be self-hosted under the SLA, 2 on bad input.
    """
    check_finite({"--requests-per-day": requests_per_day, "--input-tokens": input_tokens,
                  "--ops-usd-per-month": ops_usd_per_month, "--peak-to-average": peak_to_average})
    if scenarios:
        results = report_scenarios(input_tokens=input_tokens or 0)
        if as_json:
            print_json([s.to_json() for s in results])
        else:
            _print_scenarios(results)
        return
    if requests_per_day is None:
        raise UserError("--requests-per-day is required (or use --report-scenarios)", path="--requests-per-day")
    check_region(region)
    req = TcoRequest(
        requests_per_day=requests_per_day,
        input_tokens=input_tokens if input_tokens is not None else round(profile(workload).prompt_mean_tokens),
        output_tokens=output_tokens, model=model, quantization=quant,
        kv_cache_dtype=KvCacheDtype.FP8 if kv_fp8 else KvCacheDtype.AUTO, gpus=gpu or None,
        concurrency=concurrency, p95_seconds=p95, workload=workload, purchase=purchase, region=region,
        ops_usd_per_month=ops_usd_per_month, peak_to_average=peak_to_average, min_replicas=min_replicas,
    )
    result = tco(req)
    if as_json:
        print_json(result.to_json())
    else:
        _print_result(result)


def register(app: typer.Typer) -> None:
    app.command("tco")(tco_command)
