"""``servekit plan [--stack dev] [--json]``: what ``pulumi up`` would create, without a cloud.

Runs the real Pulumi program offline (:mod:`servekit.offline`) and prints the component tree with
resource counts, one line per model placement, the GPU node pools and any warnings. ``--json`` prints
``{stack, region, resources:[{type,name,urn,parent,inputs,dependencies}], placements, nodePools,
warnings, outputs}`` with secrets redacted.

The stack files are read from ``stacks/``; set ``SERVEKIT_STACKS_DIR`` (or the hidden
``--stacks-dir``) to plan stack files kept elsewhere (tests use temporary directories).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.tree import Tree

from servekit.audit import AuditReport
from servekit.cli._common import console, err_console, print_json

STACKS_DIR_ENV = "SERVEKIT_STACKS_DIR"


def stacks_dir(option: Path | None = None) -> Path:
    """The stacks directory: ``--stacks-dir``, else $SERVEKIT_STACKS_DIR, else the repository's ``stacks/``."""
    from servekit.stackfile import STACKS_DIR

    if option is not None:
        return option
    env = os.environ.get(STACKS_DIR_ENV)
    return Path(env) if env else STACKS_DIR


def _short(token: str) -> str:
    """``aws:ec2/subnet:Subnet`` -> ``Subnet``; ``pulumi:providers:kubernetes`` -> ``Provider(kubernetes)``."""
    if token.startswith("pulumi:providers:"):
        return f"Provider({token.rsplit(':', 1)[-1]})"
    return token.rsplit(":", 1)[-1]


def render(plan: object) -> None:
    from servekit.offline import Plan

    assert isinstance(plan, Plan)
    custom = [r for r in plan.resources if r.custom]
    root = next((r for r in plan.resources if r.type == "pulumi:pulumi:Stack"), None)
    tree = Tree(f"[bold]{plan.stack}[/] ({plan.region}): {len(custom)} resources")

    def add(node: Tree, urn: str) -> None:
        kids = plan.children(urn)
        counts = Counter(_short(k.type) for k in kids if k.custom and not plan.children(k.urn))
        for comp in (k for k in kids if not k.custom or plan.children(k.urn)):
            n = sum(1 for d in plan.descendants(comp.urn) if d.custom)
            label = f"{comp.name} [dim]{comp.type}[/]" + (f" - {n} resource{'s' if n != 1 else ''}" if n else "")
            add(node.add(label), comp.urn)
        if counts:
            node.add(", ".join(f"{c} {t}" for t, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))))

    if root is not None:
        add(tree, root.urn)
    console.print(tree)

    t = Table(title="Placements", title_justify="left")
    for col in ("model", "weights", "instance", "TP", "replicas", "nodes", "$/h (on-demand)", "p95 predicted / SLA"):
        t.add_column(col, justify="right" if col in ("TP", "replicas", "nodes", "$/h (on-demand)") else "left")
    slas = {m["name"]: m.get("slaP95Seconds") for m in plan.outputs.get("placements", []) if isinstance(m, dict)}
    for p in plan.placements:
        sla = slas.get(p.name)
        verdict = "" if sla is None else (" [green]ok[/]" if p.predicted_p95_seconds <= sla else " [red]over[/]")
        t.add_row(
            f"{p.name} ({p.model})", f"{p.quantization.value} {p.weights_gib:.0f} GiB",
            f"{p.instance_type} ({p.gpus_per_node} x {p.gpu_type})", str(p.tensor_parallel_size),
            f"{p.replicas}" + (f"-{p.max_replicas}" if p.max_replicas != p.replicas else ""),
            f"{p.nodes}" + (f"-{p.max_nodes}" if p.max_nodes != p.nodes else ""), f"{p.hourly_usd:,.2f}",
            f"{p.predicted_p95_seconds:.2f} s / {sla:g} s{verdict}" if sla is not None else
            f"{p.predicted_p95_seconds:.2f} s",
        )
    console.print(t)

    if plan.node_pools:
        pt = Table(title="GPU node groups", title_justify="left")
        for col in ("pool", "capacity", "instance types", "zones", "nodes", "volume", "$/month"):
            pt.add_column(col, justify="right" if col in ("nodes", "volume", "$/month") else "left")
        for pool in plan.node_pools:
            pt.add_row(pool["name"], f"{pool['capacityType']} ({pool['purchase']})", ", ".join(pool["instanceTypes"]),
                       ", ".join(pool["zones"]), f"{pool['minNodes']}/{pool['desiredNodes']}/{pool['maxNodes']}",
                       f"{pool['volumeGib']} GiB", f"{pool['monthlyUsd']:,.0f}")
        console.print(pt)
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def render_policy_summary(report: AuditReport, limit: int = 10) -> None:
    """One line for the policy pack's verdict, then the violations that would block or warn."""
    style = "green" if report.exit_code == 0 else "bold red"
    console.print(f"[{style}]policy:[/] {report.summary_line()}")
    for w in report.warnings:
        console.print(f"  [yellow]! {w}[/]", soft_wrap=True)
    for v in report.violations[:limit]:
        level = "[red]mandatory[/]" if v.mandatory else "[yellow]advisory[/]"
        console.print(f"  {level} {v.policy} on {v.resource_name}: {v.message}", soft_wrap=True)
    if len(report.violations) > limit:
        console.print(f"  ... {len(report.violations) - limit} more: servekit audit --stack {report.stack}")


def register(app: typer.Typer) -> None:
    @app.command("plan")
    def plan(
        stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")] = "dev",
        as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (secrets redacted).")] = False,
        stacks_dir_opt: Annotated[Path | None, typer.Option("--stacks-dir", hidden=True)] = None,
    ) -> None:
        """Show what `pulumi up` would create for a stack: components, placements, node groups, warnings."""
        from servekit.audit import audit_stack
        from servekit.offline import plan_stack

        with err_console.status(f"planning stack {stack} (running the Pulumi program offline)", spinner="dots"):
            result = plan_stack(stack, stacks_dir(stacks_dir_opt))
        with err_console.status("checking the policy pack", spinner="dots"):
            report = audit_stack(stack, stacks_dir(stacks_dir_opt), plan=result, pack_defaults_if_missing=True)
        if as_json:
            print_json({**result.to_json(), "policy": {"passed": report.exit_code == 0, "summary": report.counts(),
                                                       "violations": [v.to_json() for v in report.violations]}})
            return
        render(result)
        render_policy_summary(report)
