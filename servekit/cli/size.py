"""`servekit size`, `servekit models`, `servekit gpus`: the catalog and the sizing engine, no cloud needed."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from servekit.catalog import default_catalog
from servekit.cli._common import console, print_json
from servekit.errors import CheckFailed, from_validation_error
from servekit.sizing import (
    GIB,
    Candidate,
    NoPlacement,
    Placement,
    kv_bytes_per_token,
    legal_tp_sizes,
    place,
    place_most_faithful,
    weight_bytes,
)
from servekit.spec import ModelDeployment, Quantization, WorkloadProfile


def _rejected_table(cands: list[Candidate], title: str) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for col in ("instance", "GPU", "TP", "$/h", "p95 s", "why not"):
        t.add_column(col, overflow="fold")
    for c in cands:
        t.add_row(
            c.instance_type, c.gpu_type, str(c.tensor_parallel_size),
            f"{c.hourly_usd:,.2f}" if c.hourly_usd is not None else "-",
            f"{c.latency.p95_e2e_seconds:.2f}" if c.latency else "-",
            c.reason,
        )
    return t


def _print_placement(p: Placement) -> None:
    console.print(f"[bold]{p.model}[/] -> [bold green]{p.replicas} x {p.instance_type}[/] "
                  f"({p.gpu_type}, TP {p.tensor_parallel_size}), ${p.hourly_usd:,.2f}/h on-demand")
    for line in p.explanation:
        console.print(f"  - {line}")
    for w in p.warnings:
        console.print(f"  [yellow]! {w}[/]")
    m = p.memory
    mem = Table(title="Memory per GPU (GiB)", title_justify="left")
    for col in ("GPU total", "budget", "weights", "activations", "non-torch", "KV cache", "CUDA graphs"):
        mem.add_column(col, justify="right")
    mem.add_row(*(f"{v:.1f}" for v in (m.gpu_total_gib, m.budget_gib, m.weights_gib, m.activation_gib,
                                        m.non_torch_gib, m.kv_cache_gib, m.cuda_graphs_gib)))
    console.print(mem)
    console.print(_rejected_table(p.rejected, f"Other candidates ({len(p.rejected)})"))


def size(
    model: Annotated[str, typer.Argument(help="Model id (see `servekit models`).")],
    gpu: Annotated[list[str] | None, typer.Option("--gpu", help="Allow only this GPU (repeatable).")] = None,
    quant: Annotated[Quantization | None, typer.Option("--quant", help="Weight format; default: the most "
                                                       "faithful one that meets the SLA.")] = None,
    context: Annotated[int | None, typer.Option(
        min=256, help="Max context (tokens); default min(model max, 8192).")] = None,
    concurrency: Annotated[int, typer.Option(
        min=1, max=1024, help="Concurrent requests per replica (SLA batch size).")] = 32,
    p95: Annotated[float, typer.Option(min=0.01, max=600, help="p95 end-to-end latency SLA, seconds.")] = 3.0,
    ttft: Annotated[float | None, typer.Option(help="p95 time-to-first-token SLA, seconds.")] = None,
    workload: Annotated[WorkloadProfile, typer.Option(help="Token shape of the requests.")] = WorkloadProfile.CHAT,
    replicas: Annotated[int, typer.Option(min=1, max=64, help="Replicas to place.")] = 1,
    kv_fp8: Annotated[bool, typer.Option("--kv-fp8", help="FP8 KV cache (halves KV bytes).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Which GPUs MODEL needs at a context, concurrency and p95: placement, memory, rejected candidates.

    Exits 1 when nothing can serve the request, 2 when the request itself is malformed.
    """
    catalog = default_catalog()
    spec = catalog.model(model)
    try:
        dep = ModelDeployment.model_validate({
            "name": "size", "model": spec.id, "quantization": quant or Quantization.BF16,
            "maxContext": context, "gpus": gpu or None, "replicas": replicas,
            "kvCacheDtype": "fp8" if kv_fp8 else "auto",
            "sla": {"p95E2eSeconds": p95, "p95TtftSeconds": ttft, "concurrencyPerReplica": concurrency,
                    "workload": workload},
        })
    except ValidationError as e:
        raise from_validation_error(e, file="command line") from None
    try:
        placement = place(dep, catalog) if quant else place_most_faithful(dep, catalog)
    except NoPlacement as e:
        if as_json:
            print_json({"model": spec.id, "feasible": False, "rejected": [
                {"instanceType": c.instance_type, "tensorParallelSize": c.tensor_parallel_size, "reason": c.reason}
                for c in e.candidates]})
        else:
            console.print(_rejected_table(e.candidates, f"No placement for {spec.id}: every candidate failed"))
        raise CheckFailed(
            f"nothing can serve {spec.id} at {dep.max_context or 'default'} context, batch {concurrency}, "
            f"p95 {p95:g} s ({e.deployment.quantization.value}); see the reasons above"
        ) from None
    if as_json:
        print_json({"feasible": True, **placement.summary_json()})
    else:
        _print_placement(placement)


def models(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The model catalog (models/*.yaml)."""
    cat = default_catalog()
    rows = []
    for m in sorted(cat.models.values(), key=lambda m: m.total_params):
        rows.append({
            "id": m.id, "hfRepo": m.hf_repo, "params": m.total_params, "license": m.license.id,
            "commercialUse": m.license.commercial_use, "maxContext": m.architecture.max_position_embeddings,
            "bf16WeightsGiB": round(weight_bytes(m, Quantization.BF16) / GIB, 1),
            "kvKiBPerToken": kv_bytes_per_token(m) / 1024, "legalTp": legal_tp_sizes(m),
            "quantizations": [q.value for q in m.quantizations],
        })
    if as_json:
        print_json(rows)
        return
    t = Table(title="Models")
    for col in ("id", "params (B)", "license", "commercial", "max ctx", "bf16 GiB", "KV KiB/tok", "TP", "formats"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), f"{float(r['params']) / 1e9:.1f}", str(r["license"]),  # type: ignore[arg-type]
                  "yes" if r["commercialUse"] else "NO", f"{r['maxContext']:,}", str(r["bf16WeightsGiB"]),
                  f"{r['kvKiBPerToken']:g}", ",".join(map(str, r["legalTp"])),  # type: ignore[call-overload]
                  ",".join(r["quantizations"]))  # type: ignore[arg-type]
    console.print(t)


def gpus(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """GPUs and the EC2 instance types that carry them, with us-east-1 on-demand prices."""
    cat = default_catalog()
    rows = []
    for i in cat.instances.values():
        g = cat.gpus[i.gpu]
        rows.append({"instanceType": i.type, "gpu": g.id, "gpus": i.gpus, "gpuMemoryMiB": g.memory_mib,
                     "bandwidthGBps": g.bandwidth_gbps, "bf16Tflops": g.bf16_tflops, "nativeFp8": g.native_fp8,
                     "vcpu": i.vcpu, "memoryGiB": i.memory_gib, "capacityBlock": i.capacity_block,
                     "onDemandUsdPerHour": i.on_demand_usd_per_hour, "priceDate": i.price_date.isoformat()})
    if as_json:
        print_json(rows)
        return
    t = Table(title="GPU instance types (us-east-1 on-demand, priced 2026-07-20)")
    for col in ("instance", "GPUs", "GPU mem MiB", "GB/s", "bf16 TF", "FP8", "vCPU", "RAM GiB", "CB", "$/h"):
        t.add_column(col, justify="right")
    for r in rows:
        price = r["onDemandUsdPerHour"]
        t.add_row(str(r["instanceType"]), f"{r['gpus']} x {r['gpu']}", str(r["gpuMemoryMiB"]),
                  f"{r['bandwidthGBps']:g}", f"{r['bf16Tflops']:g}", "yes" if r["nativeFp8"] else "-",
                  str(r["vcpu"]), f"{r['memoryGiB']:g}", "yes" if r["capacityBlock"] else "-",
                  f"{price:,.3f}" if isinstance(price, float) else "CB only")
    console.print(t)


def register(app: typer.Typer) -> None:
    app.command()(size)
    app.command()(models)
    app.command()(gpus)

