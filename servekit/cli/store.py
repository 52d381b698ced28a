"""`servekit store upload`: fill the stack's S3 model store from a local checkpoint directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from servekit.cli._common import console, err_console, print_json
from servekit.cli.plan import stacks_dir
from servekit.errors import EnvironmentMissing

store_app = typer.Typer(help="The stack's S3 model store (models with source: s3).", no_args_is_help=True)


@store_app.command("upload")
def upload_cmd(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
    model: Annotated[str, typer.Option("--model", help="The model's name in the stack (not the catalog id).")],
    source: Annotated[Path, typer.Option("--from", help="Checkpoint directory, e.g. what `hf download "
                                         "<repo> --local-dir DIR` wrote.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be uploaded; upload nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary.")] = False,
) -> None:
    """Upload a checkpoint to s3://<store bucket>/models/<repo>/<revision>/ (skips files already there).

    Exit codes: 0 done, 1 the bucket is not there (stack not deployed?), 2 bad input, 3 no AWS credentials.
    """
    import botocore.exceptions
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from servekit.stackfile import resolve_stack
    from servekit.store_upload import plan_upload, s3_session, upload

    region = resolve_stack(stack, stacks_dir=stacks_dir()).spec.region
    sts, s3 = s3_session(region)
    try:
        account = sts.get_caller_identity()["Account"]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        raise EnvironmentMissing(f"cannot reach AWS STS to learn the account: {e}") from None
    plan = plan_upload(stack, model, source, account, stacks_dir())
    summary = {"bucket": plan.bucket, "prefix": plan.prefix, "files": len(plan.files), "bytes": plan.total_bytes}
    if dry_run:
        if as_json:
            print_json({**summary, "dryRun": True, "keys": [k for _, k, _ in plan.files]})
        else:
            for _, key, size in plan.files:
                console.print(f"{size:>15,}  s3://{plan.bucket}/{key}")
            console.print(f"{len(plan.files)} files, {plan.total_bytes:,} bytes (dry run: nothing uploaded)")
        return
    with Progress(TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("upload", total=plan.total_bytes)
        uploaded, skipped = upload(plan, s3, progress=lambda n: bar.advance(task, n))
    if as_json:
        print_json({**summary, "uploaded": uploaded, "skipped": skipped})
    else:
        console.print(f"s3://{plan.bucket}/{plan.prefix}/: {uploaded} uploaded, {skipped} already there "
                      f"({plan.total_bytes:,} bytes)")


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
