"""`servekit size` end to end through the real CLI entry (exit codes, JSON, messages)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from servekit.cli import app
from servekit.cli._common import run_app


def servekit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script's entry point in a fresh interpreter (real stdout/stderr)."""
    return subprocess.run([sys.executable, "-c", "from servekit.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_issue_example_json_fields() -> None:
    r = servekit("size", "llama-3.1-70b-instruct", "--context", "8192", "--concurrency", "32", "--p95", "3", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("model", "instanceType", "gpuType", "tensorParallelSize", "weightsGiB", "kvCacheTokens",
                "maxConcurrency", "predictedP95Seconds", "hourlyUsd", "rejected"):
        assert key in d, key
    assert d["predictedP95Seconds"] <= 3 and d["maxNumSeqs"] == 32
    assert all({"instanceType", "tensorParallelSize", "reason"} <= set(c) for c in d["rejected"])


def test_impossible_request_exits_1_with_reasons() -> None:
    r = servekit("size", "llama-3.1-405b-instruct", "--quant", "bf16", "--context", "131072",
                 "--concurrency", "256", "--gpu", "l4")
    assert r.returncode == 1
    assert "g6.48xlarge" in r.stdout and "exceed" in r.stdout
    assert "nothing can serve llama-3.1-405b-instruct" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (["size", "llama-9000"], "unknown model"),
    (["size", "llama-3.1-8b-instruct", "--context", "999999"], "at most 131072"),
    (["size", "llama-3.1-8b-instruct", "--quant", "int4"], "'int4' is not one of"),
    (["size", "phi-3.5-mini-instruct", "--quant", "awq"], "no awq checkpoint"),
    (["size", "llama-3.1-8b-instruct", "--gpu", "v100"], "unknown GPU"),
    (["size", "llama-3.1-8b-instruct", "--concurrency", "0"], "--concurrency"),
])
def test_malformed_requests_exit_2_without_traceback(args: list[str], needle: str) -> None:
    r = servekit(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_models_and_gpus_json() -> None:
    models = json.loads(servekit("models", "--json").stdout)
    assert len(models) == 17 and {"id", "license", "legalTp"} <= set(models[0])
    gpus = json.loads(servekit("gpus", "--json").stdout)
    assert {g["instanceType"] for g in gpus} >= {"g5.xlarge", "g6.xlarge", "g6e.xlarge", "p4d.24xlarge",
                                                "p4de.24xlarge", "p5.4xlarge", "p5.48xlarge", "p5en.48xlarge"}


def test_run_app_in_process_returns_exit_code() -> None:
    assert run_app(app, ["size", "no-such-model"]) == 2


def test_run_app_keeps_typer_exit_codes() -> None:
    import typer

    probe = typer.Typer()

    @probe.command()
    def fail() -> None:
        raise typer.Exit(code=4)

    @probe.command()
    def ok() -> None:
        return None

    assert run_app(probe, ["fail"]) == 4
    assert run_app(probe, ["ok"]) == 0
