"""Cost math against hand-computed values.

Every expected number below is written out as arithmetic on figures copied by hand from the
reference (sizing-and-cost-facts.md §1.1 on-demand prices, the discounts in prices-aws.yaml), not
computed by calling the code under test, so a wrong formula or a wrong lookup fails.
"""

from __future__ import annotations

import pytest

from servekit.catalog import default_catalog
from servekit.cost import Payment, aws_prices, node_group_cost, node_group_monthly_usd, node_rate
from servekit.errors import UserError
from servekit.sizing import Placement, place
from servekit.spec import ModelDeployment, PurchaseOption

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
