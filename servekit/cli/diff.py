"""``servekit diff --stack S --base REF [--markdown] [--json]``: what a change does to a stack.

Plans the stack offline at REF (from a temporary git worktree, with REF's own code and stack file) and
in the working tree, and compares placements, monthly cost, policy verdicts and resources down to their
properties (secrets stay redacted). See :mod:`servekit.diff`.

Output: a terminal summary by default; ``--markdown`` prints the pull-request comment (under 60,000
characters, a hidden ``<!-- servekit-diff:<stack> -->`` marker first); ``--json`` prints everything as
camelCase JSON. Exit 0 whether or not anything changed (also when the head does not plan: the output
says so), 2 when REF or the stack does not exist, 3 without git.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servekit.cli._common import console, err_console, print_json
from servekit.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("diff")
    def diff(
        stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
        base: Annotated[str, typer.Option("--base", help="Git revision to compare with, e.g. origin/main.")],
        markdown: Annotated[bool, typer.Option("--markdown", help="Print the pull-request comment (Markdown).")]
        = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
        repo: Annotated[Path | None, typer.Option("--repo", hidden=True, help="Repository (default: servekit's).")]
        = None,
    ) -> None:
        """Compare a stack's offline plan at a git revision with the working tree (resources, GPUs, cost, policy)."""
        from servekit.catalog import REPO_ROOT
        from servekit.diff import diff_stack, to_markdown

        if markdown and as_json:
            raise UserError("choose one of --markdown and --json", path="--json")
        with err_console.status(f"planning stack {stack} at {base} and in the working tree", spinner="dots"):
            result = diff_stack(stack, base, repo or REPO_ROOT)
        if as_json:
            print_json(result.to_json())
        elif markdown:
            typer.echo(to_markdown(result), nl=False)
        else:
            console.print(to_markdown(result), markup=False, soft_wrap=True, highlight=False)
