"""Cost math against hand-computed values.

Every expected number below is written out as arithmetic on figures copied by hand from the
reference (sizing-and-cost-facts.md §1.1 on-demand prices, the discounts in prices-aws.yaml), not
computed by calling the code under test, so a wrong formula or a wrong lookup fails.
"""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.catalog import default_catalog
from servekit.cli import app
from servekit.cli._common import run_app
from servekit.cli.plan import STACKS_DIR_ENV
from servekit.cost import (
    Payment,
    aws_prices,
    check_purchase,
    node_group_cost,
    node_group_monthly_usd,
    node_rate,
    stack_cost,
)
from servekit.errors import UserError
from servekit.sizing import Placement, place
from servekit.spec import DeploymentSpec, ModelDeployment, PurchaseOption
from servekit.stackfile import spec_from_config

HOURS = 730


def _dep(purchase: dict[str, object] | None = None, replicas: int = 3, instance: str = "g6e.xlarge",
         **more: object) -> ModelDeployment:
    return ModelDeployment.model_validate({
        "name": "x", "model": "llama-3.1-8b-instruct", "instanceType": instance, "replicas": replicas,
        "purchase": purchase or {"option": "on-demand"},
        "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8}, **more,
    })


def _placement(dep: ModelDeployment) -> Placement:
    return place(dep, default_catalog())


def test_on_demand_us_east_1_is_whole_nodes_times_730h() -> None:
    dep = _dep()
    p = _placement(dep)
    assert (p.instance_type, p.nodes) == ("g6e.xlarge", 3)
    # g6e.xlarge $1.861/h (reference §1.1), 3 nodes, 730 h
    assert node_group_monthly_usd(p, dep, "us-east-1") == pytest.approx(1.861 * 3 * 730)


def test_region_factor_applies() -> None:
    dep = _dep()
    p = _placement(dep)
    # eu-west-1 factor 1.12 (prices-aws.yaml, flagged uncertain)
    assert node_group_monthly_usd(p, dep, "eu-west-1") == pytest.approx(1.861 * 1.12 * 3 * 730)
    with pytest.raises(UserError, match="no price data for region"):
        node_group_monthly_usd(p, dep, "ap-south-1")


@pytest.mark.parametrize(("option", "payment", "discount"), [
    ("savings-plan-1y", Payment.NO_UPFRONT, 0.33),
    ("savings-plan-3y", Payment.ALL_UPFRONT, 0.57),
    ("reserved-3y", Payment.PARTIAL_UPFRONT, 0.54),
])
def test_commitments_on_g_family(option: str, payment: Payment, discount: float) -> None:
    dep = _dep({"option": option})
    p = _placement(dep)
    cost = node_group_cost(p, dep, "us-east-1", payment=payment)
    assert cost.monthly_usd == pytest.approx(1.861 * (1 - discount) * 3 * 730)
    assert cost.uncertain
    # The same payment written in the stack file prices the node group (and its cost tag) the same way.
    in_stack = _dep({"option": option, "payment": payment.value})
    assert node_group_monthly_usd(p, in_stack, "us-east-1") == pytest.approx(cost.monthly_usd)


def test_payment_only_for_commitments() -> None:
    with pytest.raises(ValueError, match="payment all-upfront only applies to savings plans and reserved"):
        _dep({"option": "on-demand", "payment": "all-upfront"})


def test_spot_with_on_demand_floor_splits_nodes() -> None:
    dep = _dep({"option": "spot", "onDemandFloor": 1})
    p = _placement(dep)
    cost = node_group_cost(p, dep, "us-east-1")
    # one g6e.xlarge node holds one replica: 1 on-demand node + 2 spot nodes at 63% off
    assert cost.on_demand_nodes == 1
    assert cost.monthly_usd == pytest.approx((1.861 + 2 * 1.861 * (1 - 0.63)) * 730)


def test_odcr_is_on_demand_and_capacity_block_uses_known_price() -> None:
    odcr = _dep({"option": "odcr", "reservationId": "cr-0123456789abcdef0", "availabilityZone": "us-east-1a"})
    assert node_group_monthly_usd(_placement(odcr), odcr, "us-east-1") == pytest.approx(1.861 * 3 * 730)
    inst = default_catalog().instances["p5.48xlarge"]
    # p5.48xlarge capacity block $39.33/h in us-east-1 (reference §1.5, ~Dec 2024)
    assert node_rate(inst, PurchaseOption.CAPACITY_BLOCK, "us-east-1").usd_per_hour == pytest.approx(39.33)
    # p5en has no listed CB price: 0.71 x on-demand $63.296
    p5en = default_catalog().instances["p5en.48xlarge"]
    assert node_rate(p5en, PurchaseOption.CAPACITY_BLOCK, "us-east-1").usd_per_hour == pytest.approx(63.296 * 0.71)


def test_every_catalog_family_has_spot_and_commitment_data() -> None:
    prices = aws_prices()
    for inst in default_catalog().instances.values():
        assert 0 < prices.spot(inst.family).value < 1
        for payment in Payment:
            assert 0 < prices.commitment(inst.family, "savings-plan-3y", payment).value < 0.72  # AWS max [S9]


def test_every_figure_is_dated_and_sourced() -> None:
    prices = aws_prices()
    figures = prices.figures()
    assert len(figures) > 40
    for f in figures:
        assert f.source in prices.sources
        assert f.date.year >= 2024


# --------------------------------------------------------------------------- stack cost


def _spec_and_placements(models: list[dict[str, Any]], *, egress: str = "nat", az_count: int = 2,
                         environment: str = "dev", sla_gate: bool = True,
                         budget: float | None = None) -> tuple[DeploymentSpec, list[Placement]]:
    """Spec and placements built without stackfile.place_all, so the purchase rules are tested on their own."""
    config: dict[str, Any] = {
        "aws:region": "us-east-1", "servekit:environment": environment, "servekit:slaGate": sla_gate,
        "servekit:tags": {"owner": "t@example.com", "costCenter": "cc-1", "dataClassification": "internal"},
        "servekit:network": {"azCount": az_count, "egress": egress}, "servekit:models": models,
    }
    if budget is not None:
        config["servekit:budgetMonthlyUsd"] = budget
    spec = spec_from_config(config, "t", file="stacks/Pulumi.t.yaml")
    return spec, [place(d, default_catalog()) for d in spec.models]


SMALL = {"name": "chat", "model": "llama-3.1-8b-instruct", "instanceType": "g6e.xlarge", "replicas": 1,
         "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8, "workload": "chat"}}


def test_stack_cost_lines_nat() -> None:
    spec, placements = _spec_and_placements([SMALL])
    cost = stack_cost(spec, placements)
    lines = {line.item: line.monthly_usd for line in cost.lines}
    [p] = placements
    weights_gb = p.weights_gib * 1024**3 / 1e9  # hf weights pulled through NAT once per node
    expected = {
        "GPU node group chat (1 x g6e.xlarge, on-demand)": 1.861 * 730,
        "EKS control plane": 0.10 * 730,
        "System nodes (2 x m7i.large)": 2 * 0.1008 * 730,
        "NAT gateways (1)": 1 * 0.045 * 730,  # a dev stack shares one NAT gateway over its 2 AZs
        "NAT data processing": (1 * 20 + weights_gb) * 0.045,
        "S3 gateway endpoint": 0.0,
        # (1 GPU + 2 system nodes) x (5 GB + 2 GB flow logs) + 10 GB = 31 GB ingested at $0.50,
        # 3 months retained = 93 GB stored at $0.03
        "CloudWatch logs": 31 * 0.50 + 93 * 0.03,
        "CloudWatch metrics": 40 * 0.30,
    }
    assert lines.keys() == expected.keys()
    for item, usd in expected.items():
        assert lines[item] == pytest.approx(usd), item
    assert cost.monthly_usd == pytest.approx(sum(expected.values()))
    assert not cost.over_budget


def test_stack_cost_lines_no_egress_with_model_store() -> None:
    spec, placements = _spec_and_placements([{**SMALL, "source": "s3"}], egress="none", az_count=3)
    lines = {line.item: line.monthly_usd for line in stack_cost(spec, placements).lines}
    [p] = placements
    assert not any(item.startswith("NAT") for item in lines)
    assert lines["Interface endpoints (13 x 3 AZs)"] == pytest.approx(13 * 3 * 0.01 * 730)
    assert lines["Interface endpoint data"] == pytest.approx(20 * 0.01)
    assert lines["S3 model store"] == pytest.approx(p.weights_gib * 1024**3 / 1e9 * 0.023)


def test_usd_per_million_tokens_and_break_even_utilization() -> None:
    spec, placements = _spec_and_placements([SMALL])
    [m] = stack_cost(spec, placements).models
    [p] = placements
    monthly = 1.861 * 730
    tokens = p.output_tokens_per_second * 1 * 3600 * 730  # one replica, busy every hour
    assert m.usd_per_million_output_tokens == pytest.approx(monthly / tokens * 1e6)
    assert m.usd_per_million_output_tokens_at_utilization == pytest.approx(monthly / tokens * 1e6 / 0.5)
    # GPT-4o with the chat profile's mean prompt: median 1000, p95 2500 (log-normal)
    sigma = math.log(2500 / 1000) / 1.6448536269514722
    mean_in = 1000 * math.exp(sigma**2 / 2)
    api = (2.5 * mean_in + 10 * 256) / 256
    assert m.api_usd_per_million_output_tokens == pytest.approx(api)
    assert m.break_even_utilization == pytest.approx(monthly / tokens * 1e6 / api)


# --------------------------------------------------------------------------- purchase rules


def test_spot_refused_for_sla_gated_prod_without_floor() -> None:
    spot = {**SMALL, "replicas": 2, "purchase": {"option": "spot"}}
    spec, placements = _spec_and_placements([spot], environment="prod")
    with pytest.raises(UserError) as e:
        check_purchase(spec, placements, "stacks/Pulumi.t.yaml")
    text = str(e.value)
    assert text.startswith("stacks/Pulumi.t.yaml: config.servekit:models[0].purchase.onDemandFloor: spot is refused")
    # allowed: a floor, a non-prod stack, or no SLA gate
    floor = {**spot, "purchase": {"option": "spot", "onDemandFloor": 1}}
    check_purchase(*_spec_and_placements([floor], environment="prod"), "f")
    check_purchase(*_spec_and_placements([spot], environment="dev"), "f")
    check_purchase(*_spec_and_placements([spot], environment="prod", sla_gate=False), "f")


def _block(instance: str, end: str, **more: object) -> dict[str, Any]:
    return {**SMALL, "instanceType": instance, "spreadAcrossZones": False, **more,
            "purchase": {"option": "capacity-block", "reservationId": "cr-0123456789abcdef0",
                         "availabilityZone": "us-east-1a", "endDate": end}}


def test_capacity_block_rules() -> None:
    today = date(2026, 11, 27)
    ok = _spec_and_placements([_block("p5.4xlarge", "2026-12-20")])
    check_purchase(*ok, "f", today=today)
    with pytest.raises(UserError, match=r"purchase.option: capacity blocks are not sold for g6e.xlarge"):
        check_purchase(*_spec_and_placements([_block("g6e.xlarge", "2026-12-20")]), "f", today=today)
    with pytest.raises(UserError, match=r"purchase.endDate: the capacity block for chat has already ended"):
        check_purchase(*_spec_and_placements([_block("p5.4xlarge", "2026-11-01")]), "f", today=today)
    spread = _block("p5.4xlarge", "2026-12-20", spreadAcrossZones=True, replicas=2)
    with pytest.raises(UserError, match=r"spreadAcrossZones: chat: a capacity-block is capacity in one AZ"):
        check_purchase(*_spec_and_placements([spread]), "f", today=today)


# --------------------------------------------------------------------------- the command


def _use_stacks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, budget: float) -> None:
    cfg = {"config": {
        "aws:region": "us-east-1",
        "servekit:tags": {"owner": "t@example.com", "costCenter": "cc-1", "dataClassification": "internal"},
        "servekit:network": {"azCount": 2, "egress": "nat"},
        "servekit:budgetMonthlyUsd": budget, "servekit:models": [SMALL],
    }}
    (tmp_path / "Pulumi.b.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv(STACKS_DIR_ENV, str(tmp_path))  # as $SERVEKIT_STACKS_DIR, like `servekit plan`


def test_cost_json_shape(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _use_stacks(monkeypatch, tmp_path, budget=100_000)
    assert run_app(app, ["cost", "--stack", "b", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["stack"] == "b"
    assert out["monthlyUsd"] == pytest.approx(sum(line["monthlyUsd"] for line in out["lines"]))
    assert all({"item", "monthlyUsd", "basis"} <= line.keys() for line in out["lines"])
    assert [m["name"] for m in out["models"]] == ["chat"]
    assert out["models"][0]["usdPerMillionOutputTokens"] > 0


def test_budget_breach_exits_1_with_one_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _use_stacks(monkeypatch, tmp_path, budget=1000)  # the g6e.xlarge alone is 1.861 x 730 = $1,358/month
    assert run_app(app, ["cost", "--stack", "b"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1
    assert "exceeds the budget of $1,000/month" in err[0] and "config.servekit:budgetMonthlyUsd" in err[0]


def test_nat_gateways_per_az_outside_dev() -> None:
    spec, placements = _spec_and_placements([SMALL], environment="prod", az_count=3)
    lines = {line.item: line.monthly_usd for line in stack_cost(spec, placements).lines}
    assert lines["NAT gateways (3)"] == pytest.approx(3 * 0.045 * 730)


def test_interface_endpoint_count_matches_the_network_component() -> None:
    network = pytest.importorskip("components.network")
    spec, placements = _spec_and_placements([{**SMALL, "source": "s3"}], environment="prod", az_count=3,
                                            egress="none")
    items = [line.item for line in stack_cost(spec, placements).lines]
    assert f"Interface endpoints ({len(network.INTERFACE_ENDPOINTS)} x 3 AZs)" in items


def test_system_node_count_matches_the_cluster_component() -> None:
    cluster = pytest.importorskip("components.cluster")
    spec, placements = _spec_and_placements([SMALL])
    items = [line.item for line in stack_cost(spec, placements).lines]
    assert f"System nodes ({cluster.SYSTEM_NODES[1]} x m7i.large)" in items  # desired size
