"""``servekit loadtest --stack``: the SLA comes from the stack file (read here with plain YAML to compare)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.cli.loadtest import _stack_sla

STACK = Path(__file__).resolve().parents[2] / "stacks" / "Pulumi.prod.yaml"


def test_stack_sla_is_read_from_the_stack_file() -> None:
    models = yaml.safe_load(STACK.read_text())["config"]["servekit:models"]
    raw = models[-1]
    name, sla, replicas, max_num_seqs, predicted = _stack_sla("prod", raw["name"])
    assert name == raw["name"] and replicas == raw.get("replicas", 1)
    assert sla.p95_e2e_seconds == raw["sla"]["p95E2eSeconds"]
    assert sla.concurrency_per_replica == raw["sla"]["concurrencyPerReplica"]
    assert max_num_seqs is not None and max_num_seqs >= 1
    assert predicted is None or predicted >= 1


def test_stack_usage_errors_exit_2() -> None:
    assert run_app(app, ["loadtest", "--stack", "prod"]) == 2  # several models: which one?
    assert run_app(app, ["loadtest", "--stack", "prod", "--model", "no-such-model",
                         "--endpoint", "http://127.0.0.1:9"]) == 2
    models = yaml.safe_load(STACK.read_text())["config"]["servekit:models"]
    assert run_app(app, ["loadtest", "--stack", "prod", "--model", models[0]["name"]]) == 2  # no endpoint
    assert run_app(app, ["loadtest", "--stack", "no-such-stack", "--model", "x"]) == 2


def test_emulate_rejects_fault_rates_over_one() -> None:
    assert run_app(app, ["emulate", "--error-rate", "0.6", "--stall-rate", "0.6"]) == 2


def test_emulate_rejects_infinite_latencies(capsys: pytest.CaptureFixture[str]) -> None:
    # '--ttft inf' passed the lower bound and served requests that never answered.
    assert run_app(app, ["emulate", "--port", "0", "--ttft", "inf"]) == 2
    assert capsys.readouterr().err.startswith("error: --ttft: must be a finite number (given: inf)")


def test_unreachable_endpoint_is_an_environment_error_not_an_sla_failure(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on: bound, never accepting
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        code = run_app(app, ["loadtest", "--endpoint", f"http://127.0.0.1:{port}", "--model", "chat",
                             "--duration", "3", "--concurrency", "2"])
    err = capsys.readouterr().err
    assert code == 3 and f"cannot reach http://127.0.0.1:{port}/v1/models" in err


def test_a_model_the_endpoint_does_not_serve_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from loadtests.emulator import EmulatorConfig, EmulatorProcess

    with EmulatorProcess(EmulatorConfig(model="chat")) as emu:
        code = run_app(app, ["loadtest", "--endpoint", emu.url, "--model", "chta", "--duration", "3"])
    err = capsys.readouterr().err
    assert code == 2 and "--model: the endpoint does not serve this model" in err and "allowed: chat" in err


def test_gate_refuses_a_model_the_endpoint_does_not_serve() -> None:
    from loadtests.emulator import EmulatorConfig, EmulatorProcess
    from loadtests.gate import main

    with EmulatorProcess(EmulatorConfig(model="chat")) as emu:
        env = {"SERVEKIT_ENDPOINT": emu.url, "SERVEKIT_MODEL": "chta", "SERVEKIT_P95_SECONDS": "3",
               "SERVEKIT_CONCURRENCY": "2", "SERVEKIT_DURATION_SECONDS": "3", "SERVEKIT_READY_TIMEOUT_SECONDS": "5"}
        assert main(env) == 2
