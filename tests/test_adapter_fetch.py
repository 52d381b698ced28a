"""The LoRA init container's program against a real S3 API (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from servekit.adapter_fetch import FetchError, fetch, main, parse_pair


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://{host}:{port}",
                          aws_access_key_id="test", aws_secret_access_key="test")
    client.create_bucket(Bucket="adapters")
    files = {"sql/v3/adapter_config.json": b'{"r": 16}', "sql/v3/adapter_model.safetensors": b"\x00" * 1024,
             "sql/v3/nested/extra.txt": b"x", "sql/v30/adapter_config.json": b"{}",  # a sibling prefix
             "broken/README.md": b"no adapter here"}
    for key, body in files.items():
        client.put_object(Bucket="adapters", Key=key, Body=body)
    yield client
    server.stop()


def test_s3_adapter_lands_in_its_directory(s3: Any, tmp_path: Path) -> None:
    out = fetch(["sql=s3://adapters/sql/v3"], tmp_path, s3_client=s3)
    d = out["sql"]
    assert sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()) == [
        "adapter_config.json", "adapter_model.safetensors", "nested/extra.txt"]  # not sql/v30's files
    assert (d / "adapter_model.safetensors").read_bytes() == b"\x00" * 1024


def test_source_without_adapter_config_fails_clearly(s3: Any, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"adapter 'bad' from s3://adapters/broken: 1 file\(s\) .*adapter_config"):
        fetch(["bad=s3://adapters/broken"], tmp_path, s3_client=s3)


@pytest.mark.parametrize("pair", ["noequals", "x=http://a/b", "../x=s3://a/b", "=s3://a/b"])
def test_bad_arguments(pair: str) -> None:
    with pytest.raises(FetchError):
        parse_pair(pair)


def test_main_exit_code_on_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dest", str(tmp_path), "x=ftp://nowhere"]) == 1
    assert "expected NAME=s3://" in capsys.readouterr().err
