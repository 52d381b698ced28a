"""``servekit plan``: renders every stack, --json parses, stack-file mistakes exit 2 with one clear line."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.stackfile import read_stack_config

REPO = Path(__file__).resolve().parents[1]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_app(app, ["plan", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("stack", ["dev", "prod", "regulated"])
def test_plan_renders(stack: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--stack", stack)
    assert code == 0, err
    _, cfg = read_stack_config(stack)
    assert f"{stack} (us-east-1):" in out and "servekit:network:Network" in out and "servekit:cluster:Cluster" in out
    for m in cfg["servekit:models"]:
        assert m["name"] in out
    assert "GPU node groups" in out and "Traceback" not in out + err
    assert f"policy: PASS {stack}: 34 policies" in out


def test_plan_shows_policy_violations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A non-commercial model in prod: the plan still renders (exit 0) and names the mandatory violation;
    # `servekit audit` is the command that fails on it.
    _, cfg = read_stack_config("prod")
    cfg = copy.deepcopy(cfg)
    cfg["servekit:models"][1]["model"] = "command-r-plus"
    cfg["servekit:models"][1].update({"quantization": "gptq", "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8}})
    (tmp_path / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": cfg}))
    code, out, err = run(capsys, "--stack", "prod", "--stacks-dir", str(tmp_path))
    assert code == 0, err
    assert "policy: FAIL prod" in out and "mandatory model-license-allowed" in out
    code, out, _ = run(capsys, "--stack", "prod", "--stacks-dir", str(tmp_path), "--json")
    data = json.loads(out)
    assert data["policy"]["passed"] is False
    assert {v["policy"] for v in data["policy"]["violations"]} >= {"model-license-allowed"}


def test_plan_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--stack", "prod", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["stack"] == "prod" and {"resources", "placements", "warnings", "nodePools", "outputs"} <= set(data)
    assert all({"type", "name", "parent", "inputs"} <= set(r) for r in data["resources"])
    assert [p["name"] for p in data["placements"]] == ["contracts", "extract"]
    contracts = data["placements"][0]
    assert contracts["instanceType"] == "p4de.24xlarge" and contracts["tensorParallelSize"] == 2
    assert "rejected" not in contracts  # the JSON plan keeps the decision, not every loser
    assert any(r["type"] == "aws:eks/cluster:Cluster" for r in data["resources"])


def _dev() -> dict[str, Any]:
    return copy.deepcopy(read_stack_config("dev")[1])


def _mistakes() -> dict[str, tuple[dict[str, Any], str]]:
    unknown_key = _dev()
    unknown_key["servekit:netwrok"] = unknown_key.pop("servekit:network")
    bad_cidr = _dev()
    bad_cidr["servekit:network"]["vpcCidr"] = "10.40.0.0/33"
    unknown_model = _dev()
    unknown_model["servekit:models"][0]["model"] = "llama-9-ultra"
    no_fit = _dev()
    no_fit["servekit:models"][0].update(model="llama-3.1-70b-instruct", quantization="bf16", gpus=["l4"],
                                        instanceType="g6.xlarge")
    reservation = _dev()  # the VPC spans the first 2 AZs (us-east-1a, 1b); the block is in 1d
    reservation["servekit:models"][0].update(
        model="llama-3.1-8b-instruct", quantization="bf16", gpus=None, instanceType="p5.4xlarge",
        purchase={"option": "capacity-block", "reservationId": "cr-0123456789abcdef0",
                  "availabilityZone": "us-east-1d", "endDate": "2027-06-30"})
    reservation["servekit:models"][0].pop("gpus")
    open_endpoint = _dev()
    open_endpoint["servekit:cluster"]["publicAccessCidrs"] = ["0.0.0.0/0"]
    lonely_spot = _dev()
    lonely_spot["servekit:models"][0].update(
        model="llama-3.1-70b-instruct", quantization="bf16", gpus=["a100-80gb"],
        sla={"p95E2eSeconds": 30, "concurrencyPerReplica": 4}, purchase={"option": "spot"})
    return {
        "unknown-key": (unknown_key, "config.servekit:netwrok: unknown config key"),
        "bad-cidr": (bad_cidr, "config.servekit:network.vpcCidr"),
        "unknown-model": (unknown_model, "config.servekit:models[0].model: unknown model (given: 'llama-9-ultra')"),
        "no-fit": (no_fit, "no instance type can serve chat (llama-3.1-70b-instruct)"),
        "reservation-az": (reservation, "the reservation's AZ is not one the VPC spans (given: 'us-east-1d')"),
        "open-endpoint": (open_endpoint, "opens the API to the whole internet"),
        "lonely-spot": (lonely_spot, "spot for chat needs at least two instance types"),
    }


@pytest.mark.parametrize("case", list(_mistakes()))
def test_stack_file_mistakes_exit_2_with_one_clear_line(case: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    cfg, expected = _mistakes()[case]
    path = tmp_path / f"Pulumi.{case}.yaml"
    path.write_text(yaml.safe_dump({"config": cfg}, sort_keys=False))
    code, out, err = run(capsys, "--stack", case, "--stacks-dir", str(tmp_path))
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in err


def test_the_real_command_with_a_stacks_dir_from_the_environment(tmp_path: Path) -> None:
    cfg, expected = _mistakes()["bad-cidr"]
    (tmp_path / "Pulumi.broken.yaml").write_text(yaml.safe_dump({"config": cfg}))
    env = {**os.environ, "SERVEKIT_STACKS_DIR": str(tmp_path)}
    servekit = Path(sys.executable).parent / "servekit"
    r = subprocess.run([str(servekit), "plan", "--stack", "broken"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and expected in r.stderr and "Traceback" not in r.stderr and r.stdout == ""
    r = subprocess.run([str(servekit), "plan", "--stack", "nope"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no such stack" in r.stderr and "broken" in r.stderr
