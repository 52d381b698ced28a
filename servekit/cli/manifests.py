"""``servekit manifests --stack S -o DIR``: every Kubernetes object of the offline plan as YAML.

Runs the real program offline (servekit.offline, the same run as ``servekit plan``), takes every
Kubernetes resource it registers and writes one file per object under ``DIR/<namespace>/`` (cluster
objects under ``DIR/_cluster/``). Secret values are never written (servekit/manifests.py). Helm
releases are listed, not rendered: Helm renders them at deploy time. ``--check`` validates every
object against the strict Kubernetes schemas of the stack's cluster version (and vendored CRD schemas)
and exits 1 if one fails.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from servekit.cli._common import console, err_console, print_json
from servekit.errors import CheckFailed


def build(stack: str, out: Path, *, stacks_dir: Path | None = None, check: bool = False) -> dict[str, Any]:
    from servekit.cli.plan import stacks_dir as resolve_stacks_dir
    from servekit.manifests import kubernetes_objects, validate_object, write_manifests
    from servekit.offline import plan_stack
    from servekit.stackfile import load_stack

    directory = resolve_stacks_dir(stacks_dir)
    plan = plan_stack(stack, directory)
    extracted = kubernetes_objects(plan.resources)
    version = load_stack(stack, directory).cluster.version
    header = f"servekit manifests: stack {stack}, Kubernetes {version}; generated offline, secret values redacted"
    paths = write_manifests(extracted, out, header=header)
    releases = [r for r in plan.resources if r.type == "kubernetes:helm.sh/v3:Release"]
    result: dict[str, Any] = {
        "stack": stack,
        "kubernetesVersion": version,
        "directory": str(out),
        "files": [str(p) for p in paths],
        "objects": dict(sorted(Counter(o["kind"] for o in extracted.objects).items())),
        "helmReleases": [{"name": r.inputs.get("name", r.name), "chart": r.inputs.get("chart"),
                          "version": r.inputs.get("version"), "namespace": r.inputs.get("namespace")}
                         for r in releases],
        "warnings": plan.warnings,
    }
    if check:
        failures, unchecked = [], []
        for obj, path in zip(extracted.objects, paths, strict=True):
            try:
                how = validate_object(obj, version)
            except Exception as e:  # kubernetes_validate / jsonschema errors: report, keep going
                failures.append(f"{path}: {str(e).splitlines()[0]}")
                continue
            if how == "unchecked":
                unchecked.append(f"{obj['apiVersion']} {obj['kind']}")
        result["invalid"] = failures
        result["unchecked"] = sorted(set(unchecked))
    return result


def register(app: typer.Typer) -> None:
    @app.command("manifests")
    def manifests(
        stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the YAML files.")],
        check: Annotated[bool, typer.Option(
            "--check", help="Validate every object against the cluster version's strict schemas.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
        stacks_dir: Annotated[Path | None, typer.Option("--stacks-dir", hidden=True)] = None,
    ) -> None:
        """Write every Kubernetes object the stack would create as YAML (secret values redacted)."""
        with err_console.status(f"running the {stack} program offline", spinner="dots"):
            result = build(stack, out, stacks_dir=stacks_dir, check=check)
        for w in result["warnings"]:
            err_console.print(f"warning: {w}", markup=False, soft_wrap=True)
        invalid = result.get("invalid", [])
        if as_json:
            print_json(result)
        else:
            kinds = ", ".join(f"{n} {k}" for k, n in result["objects"].items())
            console.print(f"wrote {len(result['files'])} files to {out} ({kinds})", markup=False, soft_wrap=True)
            for r in result["helmReleases"]:
                console.print(f"helm release {r['name']}: chart {r['chart']} {r['version']} in {r['namespace']} "
                              "(rendered by Helm at deploy time, not written)", markup=False, soft_wrap=True)
            if check:
                console.print(f"checked against Kubernetes {result['kubernetesVersion']} (strict): "
                              f"{len(result['files']) - len(invalid)} valid, {len(invalid)} invalid", markup=False)
                for u in result["unchecked"]:
                    console.print(f"not schema-checked (no CRD schema vendored): {u}", markup=False)
        for line in invalid:
            err_console.print(f"invalid: {line}", markup=False, soft_wrap=True)
        if invalid:
            raise CheckFailed(f"{len(invalid)} object(s) failed schema validation")
