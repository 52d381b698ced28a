"""Fill the stack's S3 model store from a local copy of a checkpoint (``servekit store upload``).

The store's bucket and each model's key prefix are fixed by the stack (components/model_store.py:
``bucket_name``, ``store_prefix``), so the upload needs only the stack, the model's name in it and
a directory holding the checkpoint - typically what ``hf download <repo> --local-dir DIR`` wrote on
a machine that can reach the hub. Only safetensors checkpoints are accepted: vLLM's Run:ai streamer,
which the pods load with, streams safetensors and nothing else.

Files already in the store with the same size are skipped, so an interrupted upload resumes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from servekit.catalog import default_catalog
from servekit.errors import CheckFailed, EnvironmentMissing, UserError
from servekit.spec import ModelSource
from servekit.stackfile import resolve_stack

# What vLLM reads from a checkpoint directory; anything else (README, .git, pickled .bin weights) stays out.
INCLUDE_SUFFIXES = (".json", ".safetensors", ".model", ".txt", ".tiktoken", ".jinja")


@dataclass(frozen=True)
class UploadPlan:
    bucket: str
    prefix: str
    files: list[tuple[Path, str, int]]  # local path, key, size

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files)


def _checkpoint_files(source: Path) -> Iterator[Path]:
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts) and path.suffix in INCLUDE_SUFFIXES:
            yield path


def plan_upload(
    stack: str, model_name: str, source: Path, account_id: str, stacks_dir: Path | None = None,
) -> UploadPlan:
    """Which files go where; raises UserError when the stack, model or directory is wrong."""
    from components.model_store import bucket_name, store_prefix

    resolved = resolve_stack(stack, stacks_dir=stacks_dir) if stacks_dir else resolve_stack(stack)
    spec = resolved.spec
    names = [m.name for m in spec.models]
    if model_name not in names:
        raise UserError("no such model in the stack", file=resolved.file, path="--model", given=model_name,
                        allowed=", ".join(names))
    index = names.index(model_name)
    dep = spec.models[index]
    if dep.source is not ModelSource.S3:
        raise UserError(f"model {model_name} loads from the hub (source: {dep.source.value}); only source: s3 "
                        "models read the store", file=resolved.file, path=f"config.servekit:models[{index}].source")
    if not source.is_dir():
        raise UserError("not a directory", path="--from", given=str(source))
    files = list(_checkpoint_files(source))
    if not (source / "config.json").is_file():
        raise UserError("no config.json: not a Hugging Face checkpoint directory", path="--from", given=str(source))
    if not any(p.suffix == ".safetensors" for p in files):
        raise UserError("no .safetensors weights (vLLM's streamer loads only safetensors)", path="--from",
                        given=str(source))
    placement = resolved.placements[index]
    prefix = store_prefix(placement, default_catalog().model(dep.model))
    bucket = bucket_name(spec.stack, account_id, spec.region)
    return UploadPlan(bucket=bucket, prefix=prefix,
                      files=[(p, f"{prefix}/{p.relative_to(source).as_posix()}", p.stat().st_size) for p in files])


def s3_session(region: str) -> tuple[Any, Any]:
    """(sts, s3) clients; EnvironmentMissing (exit 3) without credentials. Honours AWS_ENDPOINT_URL."""
    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        raise EnvironmentMissing("no AWS credentials found; the upload needs the store's write policy "
                                 "(stack output modelStoreWritePolicyArn)")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})
    return (session.client("sts", endpoint_url=endpoint, config=cfg),
            session.client("s3", endpoint_url=endpoint, config=cfg))


def upload(plan: UploadPlan, s3: Any, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Upload every file not already there with the same size; returns (uploaded, skipped)."""
    uploaded = skipped = 0
    try:
        s3.head_bucket(Bucket=plan.bucket)
    except botocore.exceptions.ClientError as e:
        raise CheckFailed(f"bucket {plan.bucket} is not reachable ({e.response.get('Error', {}).get('Code')}): "
                          "deploy the stack first (`pulumi up`), or check the account and region") from None
    for path, key, size in plan.files:
        try:
            existing = s3.head_object(Bucket=plan.bucket, Key=key)["ContentLength"]
        except botocore.exceptions.ClientError:
            existing = None
        if existing == size:
            skipped += 1
        else:
            # The bucket's default encryption (SSE-KMS with the store key) applies; no per-object setting.
            s3.upload_file(str(path), plan.bucket, key)
            uploaded += 1
        if progress:
            progress(size)
    return uploaded, skipped
