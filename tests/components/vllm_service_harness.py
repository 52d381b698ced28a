"""Run the serving side (components.vllm_service.deploy_models) under recording Pulumi mocks.

``preview=False`` so inputs are real values (pulumi-notes.md §3). Invokes the components make are
answered here (caller identity, region); every registered resource is recorded with its type token,
name and engine-named (camelCase) inputs, exactly what the offline Plan holds.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

with warnings.catch_warnings():
    # pulumi_aws.s3's __init__ imports its deprecated *V2 classes, each warning at import; the kit uses none.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws

    pulumi_aws.s3.Bucket  # noqa: B018 (the attribute access runs the lazily loaded module now)

from components.vllm_service import Serving, ServingArgs, deploy_models
from servekit.catalog import default_catalog
from servekit.stackfile import resolve_stack

ACCOUNT = "123456789012"
REGION = "us-east-1"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


@dataclass(frozen=True)
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs)))
        state = dict(args.inputs)
        if args.typ == "aws:s3/bucket:Bucket":
            state["arn"] = f"arn:aws:s3:::{state['bucket']}"
        elif args.typ == "aws:kms/key:Key":
            state["keyId"] = "1234abcd-12ab-34cd-56ef-1234567890ab"
            state["arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{state['keyId']}"
        elif args.typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}"
            state["name"] = args.name
        elif args.typ.startswith("aws:"):
            state.setdefault("arn", f"arn:aws:mock:{REGION}:{ACCOUNT}:{args.name}")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDA", "id": ACCOUNT}
        if args.token == "aws:index/getRegion:getRegion":
            return {"region": REGION, "name": REGION, "id": REGION, "description": "US East (N. Virginia)",
                    "endpoint": f"ec2.{REGION}.amazonaws.com"}
        return {}


def run_program(program: Callable[[], None], *, stack: str = "test") -> list[Recorded]:
    """A fresh event loop and root resource per run (as servekit.offline does), closed afterwards."""
    from pulumi.runtime import settings

    mocks = RecordingMocks()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        settings.ROOT.set(None)
        pulumi.runtime.set_mocks(mocks, project="servekit", stack=stack, preview=False)
        _sync_await(run_pulumi_func(program))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
        settings.ROOT.set(None)
    return mocks.resources


def build_stack(stack: str, *, stacks_dir: Path | None = None, hf_token: str | None = "hf_test_token",
                **kwargs: Any) -> tuple[list[Recorded], Serving]:
    """resolve_stack + deploy_models under mocks; ``hf_token`` becomes a Pulumi secret as in __main__."""
    resolved = resolve_stack(stack, stacks_dir=stacks_dir) if stacks_dir else resolve_stack(stack)
    holder: dict[str, Serving] = {}

    def program() -> None:
        holder["serving"] = deploy_models(ServingArgs(
            spec=resolved.spec, placements=resolved.placements, catalog=default_catalog(),
            cluster_name="servekit-test", hf_token=pulumi.Output.secret(hf_token) if hf_token else None,
            node_role_name="servekit-nodes", **kwargs))

    return run_program(program, stack=stack), holder["serving"]


def of_type(resources: list[Recorded], typ: str) -> list[Recorded]:
    return [r for r in resources if r.typ == typ]


def unwrap(value: Any) -> Any:
    """Remove Pulumi's secret wrapper (to assert on the plain value a test put in)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270" and "value" in value:
            return unwrap(value["value"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"
