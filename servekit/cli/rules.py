"""``servekit rules --stack S -o DIR``: the stack's Prometheus rule files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from servekit.cli._common import console, err_console, print_json
from servekit.errors import UserError


def _safe_filename(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def write_rule_files(stack: str, out_dir: Path, *, per_group: bool = False) -> tuple[list[Path], list[str]]:
    """Load the stack, write its rule file(s) into ``out_dir``; return the paths and notes."""
    from servekit.alert_rules import rule_file, rule_groups, rule_notes
    from servekit.cli.plan import stacks_dir
    from servekit.stackfile import load_stack  # lazily: it pulls in the catalog

    spec = load_stack(stack, stacks_dir())
    groups = rule_groups(spec)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("the output path exists and is not a directory", path="-o", given=str(out_dir))
    batches = [(g["name"], [g]) for g in groups] if per_group else [(f"servekit-{spec.stack}", groups)]
    paths = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, batch in batches:
            path = out_dir / f"{_safe_filename(name)}.rules.yaml"
            path.write_text(rule_file(batch), encoding="utf-8")
            paths.append(path)
    except OSError as e:
        raise UserError(f"cannot write the rule files: {e.strerror or e}", path="-o", given=str(out_dir)) from None
    return paths, rule_notes(spec)


def register(app: typer.Typer) -> None:
    @app.command("rules")
    def rules(
        stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
        out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the rule files.")],
        per_group: Annotated[
            bool, typer.Option("--per-group", help="One file per rule group instead of one per stack.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the files written as JSON.")] = False,
    ) -> None:
        """Write the stack's Prometheus recording and alerting rules (from each model's SLA)."""
        paths, notes = write_rule_files(stack, out, per_group=per_group)
        for note in notes:
            err_console.print(f"note: {note}", markup=False, soft_wrap=True)
        if as_json:
            print_json({"stack": stack, "files": [str(p) for p in paths], "notes": notes})
            return
        for p in paths:
            console.print(f"wrote {p}", markup=False)
