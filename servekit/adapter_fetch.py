"""Download LoRA adapters into a directory before vLLM starts (the init container's program).

Runs inside the vLLM image (which ships boto3 and huggingface_hub), mounted from a ConfigMap by
components/vllm_service.py, so it uses only the standard library plus those two, imported lazily::

    python3 adapter_fetch.py --dest /adapters sql=s3://bucket/adapters/sql hr=hf://org/hr-lora@v2

Each adapter lands in ``<dest>/<name>/`` and must contain ``adapter_config.json`` (what vLLM's
``--lora-modules name=path`` reads); anything else is an error naming the adapter, so a bad source
fails the pod's init step with a clear message instead of a vLLM crash loop.
S3 credentials come from the pod's identity (EKS Pod Identity); the hub token, when set, from the
``HF_TOKEN`` environment variable (never an argument, so it is not in the pod spec).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path, PurePosixPath
from typing import Any

REQUIRED_FILE = "adapter_config.json"


class FetchError(Exception):
    pass


def parse_pair(pair: str) -> tuple[str, str]:
    name, sep, source = pair.partition("=")
    if not sep or not name or not source.startswith(("s3://", "hf://")):
        raise FetchError(f"expected NAME=s3://bucket/prefix or NAME=hf://org/repo[@revision], got {pair!r}")
    if "/" in name or name in (".", ".."):
        raise FetchError(f"adapter name {name!r} cannot be used as a directory name")
    return name, source


def fetch_s3(source: str, dest: Path, client: Any = None) -> int:
    """Copy every object under ``s3://bucket/prefix/`` to ``dest``; returns the number of files."""
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if client is None:
        import boto3

        client = boto3.client("s3")
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            rel = PurePosixPath(key[len(prefix):].lstrip("/")) if prefix else PurePosixPath(key)
            if not rel.parts or key.endswith("/"):
                continue
            if ".." in rel.parts:
                raise FetchError(f"refusing object key that escapes the adapter directory: {key!r}")
            target = dest.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(target))
            count += 1
    return count


def fetch_hf(source: str, dest: Path) -> int:
    repo, _, revision = source.removeprefix("hf://").partition("@")
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=repo, revision=revision or None, local_dir=str(dest),
                      token=os.environ.get("HF_TOKEN") or None)
    return sum(1 for p in dest.rglob("*") if p.is_file())


def fetch(pairs: list[str], dest: Path, s3_client: Any = None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pair in pairs:
        name, source = parse_pair(pair)
        target = dest / name
        target.mkdir(parents=True, exist_ok=True)
        n = fetch_s3(source, target, s3_client) if source.startswith("s3://") else fetch_hf(source, target)
        if not (target / REQUIRED_FILE).is_file():
            raise FetchError(f"adapter {name!r} from {source}: {n} file(s) fetched but no {REQUIRED_FILE}; "
                             "is the source a PEFT LoRA adapter directory?")
        print(f"adapter {name}: {n} file(s) from {source} -> {target}", flush=True)
        out[name] = target
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--dest", required=True, type=Path)
    ap.add_argument("adapters", nargs="+", metavar="NAME=SOURCE")
    ns = ap.parse_args(argv)
    try:
        fetch(ns.adapters, ns.dest)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
