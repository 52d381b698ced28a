"""Mistakes real users make on the command line: each exits with its code, one clear line, no traceback."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.cli.loadtest import _stack_sla
from servekit.cli.plan import STACKS_DIR_ENV
from servekit.stackfile import read_stack_config


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_stack_file_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.dev.yaml").mkdir()
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'Pulumi.dev.yaml'}: is a directory" in err


def test_a_stack_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_bytes(b"\xff\xfe config:\n")
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'Pulumi.dev.yaml'}: not valid YAML: not UTF-8" in err


def test_a_repeated_model_name_names_the_models_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg = read_stack_config("dev")
    cfg = copy.deepcopy(cfg)
    cfg["servekit:models"].append(copy.deepcopy(cfg["servekit:models"][0]))
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": cfg}))
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert (f"{tmp_path / 'Pulumi.dev.yaml'}: config.servekit:models: model names must be unique in a stack; "
            "repeated: chat") in err


def _stack_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "elsewhere") -> Path:
    """The dev stack, copied to a stacks directory named by $SERVEKIT_STACKS_DIR under another name."""
    _, cfg = read_stack_config("dev")
    path = tmp_path / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": cfg}))
    monkeypatch.setenv(STACKS_DIR_ENV, str(tmp_path))
    return path


def test_rules_reads_the_stacks_dir_plan_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _stack_elsewhere(tmp_path, monkeypatch)
    code, _, err = run(capsys, "rules", "--stack", "elsewhere", "-o", str(tmp_path / "rules"))
    assert code == 0, err
    assert [p.name for p in (tmp_path / "rules").iterdir()] == ["servekit-elsewhere.rules.yaml"]


def test_preflight_checks_the_stack_from_the_stacks_dir_before_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = _stack_elsewhere(tmp_path, monkeypatch)
    path.write_text(path.read_text().replace("vpcCidr", "vpcCIDR"))
    code, out, err = run(capsys, "preflight", "--stack", "elsewhere")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{path}: config.servekit:network.vpcCIDR: unknown key" in err


def test_loadtest_stack_reads_the_stacks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stack_elsewhere(tmp_path, monkeypatch)
    name, sla, replicas, _, _ = _stack_sla("elsewhere", None)
    assert (name, sla.p95_e2e_seconds, replicas) == ("chat", 10, 1)  # stacks/Pulumi.dev.yaml's values


@pytest.mark.parametrize("given", ["[/x]", "[bold]x"])
def test_an_error_shows_what_was_given_even_if_it_looks_like_markup(given: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "size", given)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: unknown model (given: '{given}'); allowed: ")


@pytest.mark.parametrize("command", [["manifests", "--stack", "dev"], ["rules", "--stack", "dev"],
                                     ["audit", "--stack", "dev", "--format", "json"]])
def test_an_output_path_under_a_file(command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("keep\n")
    out = tmp_path / "afile" / "sub"
    code, stdout, err = run(capsys, *command, "-o", str(out))
    assert code == 2 and stdout == "" and "Traceback" not in err
    assert err.startswith("error: -o: ") and f"(given: '{out}')" in err
    assert (tmp_path / "afile").read_text() == "keep\n" and list(tmp_path.iterdir()) == [tmp_path / "afile"]


def test_audit_output_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit", "--stack", "dev", "-o", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"error: -o: cannot write a file there (it is a directory, or under a file) (given: '{tmp_path}')" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("http://127.0.0.1:notaport", "not a valid URL: Port could not be cast to integer value as 'notaport'"),
    ("http://127.0.0.1:99999", "not a valid URL: Port out of range 0-65535"),
    ("http://", "the endpoint URL has no host"),
])
def test_loadtest_rejects_a_malformed_endpoint_before_running(endpoint: str, expected: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "loadtest", "--endpoint", endpoint, "--model", "chat", "--duration", "1")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: --endpoint: {expected}") and f"(given: '{endpoint}')" in err


@pytest.mark.parametrize("option", ["--json", "--markdown", "--html"])
def test_loadtest_rejects_an_unwritable_report_path_before_running(option: str, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 on 127.0.0.1 is closed: had the run started, the verdict would be FAIL (exit 1), not 2.
    for bad in (tmp_path, tmp_path / "afile" / "report"):
        (tmp_path / "afile").write_text("keep\n")
        code, out, err = run(capsys, "loadtest", "--endpoint", "http://127.0.0.1:9", "--model", "chat",
                             "--duration", "1", "--concurrency", "1", option, str(bad))
        assert code == 2 and out == "" and "Traceback" not in err
        assert err.startswith(f"error: {option}: cannot write a file there") and f"(given: '{bad}')" in err


@pytest.mark.parametrize("option", ["--duration", "--p95", "--timeout", "--target-rps"])
def test_loadtest_rejects_infinity(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    # --duration inf ran forever; the others made a verdict against an infinite SLA or timeout.
    code, out, err = run(capsys, "loadtest", "--endpoint", "http://127.0.0.1:9", "--model", "chat", option, "inf")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: {option}: must be a finite number (given: inf)")


@pytest.mark.parametrize(("mutate", "path", "allowed"), [
    # the allowed keys are the camelCase aliases of the pydantic model at that path (servekit/spec.py)
    (lambda c: c["servekit:network"].update(vpcCIDR=c["servekit:network"].pop("vpcCidr")),
     "config.servekit:network.vpcCIDR", "azCount, egress, vpcCidr"),
    (lambda c: c["servekit:models"][0]["sla"].update(p95Seconds=3),
     "config.servekit:models[0].sla.p95Seconds",
     "concurrencyPerReplica, maxErrorRate, p95E2eSeconds, p95TtftSeconds, workload"),
])
def test_a_nested_typo_lists_the_keys_allowed_there(mutate: Any, path: str, allowed: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg = read_stack_config("dev")
    cfg = copy.deepcopy(cfg)
    mutate(cfg)
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": cfg}))
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"error: {tmp_path / 'Pulumi.dev.yaml'}: {path}: unknown key (a typo?); allowed: {allowed}"


def test_a_typo_in_a_catalog_file_lists_the_keys_allowed_there(tmp_path: Path) -> None:
    from servekit.catalog import DATA_DIR, read_yaml, validate_file
    from servekit.cost import ApiPrices
    from servekit.errors import UserError

    data = read_yaml(DATA_DIR / "prices-api.yaml")
    assert isinstance(data, dict)
    with pytest.raises(UserError, match=r"^[^:]+: optionz: unknown key \(a typo\?\); allowed: options, sources$"):
        validate_file(ApiPrices, {**data, "optionz": data["options"]}, tmp_path / "prices-api.yaml")


@pytest.mark.parametrize(("key", "needle"), [
    ("aws:regin", "config.aws:regin: unknown aws provider config key (a typo?)"),
    ("servekit:region", "config.servekit:region: unknown config key (a typo?)"),
    ("kubernetes:context", "config.kubernetes:context: unknown config namespace"),
])
def test_misplaced_or_misspelled_provider_keys(key: str, needle: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # aws:regin would otherwise deploy silently to the default region; servekit:region would be a
    # second home for aws:region.
    _, cfg = read_stack_config("dev")
    cfg = {**copy.deepcopy(cfg), key: "eu-west-1"}
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": cfg}))
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert needle in err


def test_real_aws_provider_keys_pass() -> None:
    from servekit.stackfile import aws_provider_keys, spec_from_config

    # Read from the installed pulumi-aws provider: a layout change there must show up here.
    assert {"region", "profile", "defaultTags", "allowedAccountIds"} <= aws_provider_keys()
    _, cfg = read_stack_config("dev")
    spec = spec_from_config({**cfg, "aws:profile": "platform", "aws:allowedAccountIds": ["123456789012"]}, "dev",
                            file="stacks/Pulumi.dev.yaml")
    assert spec.region == "us-east-1"
