"""`servekit store upload` against moto's S3 in server mode on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from components.model_store import bucket_name
from servekit.cli import app
from servekit.cli._common import run_app

ACCOUNT = "123456789012"  # moto's default account
BUCKET = bucket_name("regulated", ACCOUNT, "us-east-1")
PREFIX = "models/Qwen/Qwen2.5-32B-Instruct/main"  # the regulated stack's `notes` model, bf16, revision main


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> object:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": moto_url,
                 "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []) if _exists(client) else []:
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    if not _exists(client):
        client.create_bucket(Bucket=BUCKET)
    return client


def _exists(client: object) -> bool:
    try:
        client.head_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        return True
    except Exception:
        return False


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    d = tmp_path / "ckpt"
    (d / ".git").mkdir(parents=True)
    (d / ".git" / "HEAD").write_text("ref")
    (d / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    (d / "tokenizer.json").write_text("{}")
    (d / "model-00001-of-00001.safetensors").write_bytes(b"\0" * 4096)
    (d / "README.md").write_text("not needed")
    (d / "pytorch_model.bin").write_bytes(b"pickle")
    return d


def _keys(client: object) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])}  # type: ignore[attr-defined]


def test_upload_puts_the_checkpoint_under_the_models_prefix_and_resumes(
        s3: object, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["store", "upload", "--stack", "regulated", "--model", "notes", "--from", str(checkpoint), "--json"]
    assert run_app(app, args) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["bucket"], first["prefix"], first["uploaded"], first["skipped"]) == (BUCKET, PREFIX, 3, 0)
    # Only what vLLM reads: no README, no .git, no pickled .bin weights.
    assert _keys(s3) == {f"{PREFIX}/config.json", f"{PREFIX}/tokenizer.json",
                         f"{PREFIX}/model-00001-of-00001.safetensors"}
    assert run_app(app, args) == 0  # a second run finds everything there
    again = json.loads(capsys.readouterr().out)
    assert (again["uploaded"], again["skipped"]) == (0, 3)


def test_dry_run_uploads_nothing(s3: object, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(app, ["store", "upload", "--stack", "regulated", "--model", "notes", "--from", str(checkpoint),
                         "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dryRun"] is True
    assert _keys(s3) == set()


@pytest.mark.parametrize(("args", "code", "needle"), [
    (["--stack", "dev", "--model", "chat"], 2, "loads from the hub (source: hf)"),
    (["--stack", "regulated", "--model", "nope"], 2, "--model: no such model in the stack"),
])
def test_wrong_model_is_exit_2(s3: object, checkpoint: Path, args: list[str], code: int, needle: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(app, ["store", "upload", *args, "--from", str(checkpoint)]) == code
    assert needle in capsys.readouterr().err


def test_not_a_checkpoint_is_exit_2(s3: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    assert run_app(app, ["store", "upload", "--stack", "regulated", "--model", "notes", "--from", str(tmp_path)]) == 2
    assert "no .safetensors weights" in capsys.readouterr().err


def test_missing_bucket_is_exit_1(s3: object, checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s3.delete_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    assert run_app(app, ["store", "upload", "--stack", "regulated", "--model", "notes", "--from", str(checkpoint)]) == 1
    assert f"bucket {BUCKET} is not reachable" in capsys.readouterr().err


def test_no_credentials_is_exit_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, checkpoint: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert run_app(app, ["store", "upload", "--stack", "regulated", "--model", "notes", "--from", str(checkpoint)]) == 3
    assert "no AWS credentials" in capsys.readouterr().err
