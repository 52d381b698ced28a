"""Cost: purchase options, node-group and stack monthly cost, $/1M output tokens, API comparison.

Prices live only in data files: us-east-1 on-demand per instance type in ``data/instances.yaml``,
everything applied on top of it (region factors, spot / commitment discounts, Capacity Block
prices, fixed AWS service prices) in ``data/prices-aws.yaml``, API prices in ``data/prices-api.yaml``.
Every figure there carries its source, its date and an ``uncertain`` flag.

A node group pays for whole nodes (``Placement.nodes``) for every hour of the month
(``hoursPerMonth``, 730), at the purchase option's rate in the stack's region.
"""

from __future__ import annotations

import math
from datetime import date
from enum import StrEnum
from functools import cache
from pathlib import Path

from pydantic import Field, model_validator

from servekit.catalog import Catalog, default_catalog, read_yaml, validate_file
from servekit.errors import UserError
from servekit.sizing import Placement
from servekit.spec import Frozen, InstanceSpec, ModelDeployment, PurchaseOption, Source

DATA_DIR = Path(__file__).parent / "data"
AWS_PRICES_FILE = DATA_DIR / "prices-aws.yaml"


class Payment(StrEnum):
    """How a commitment (savings plan / reserved instance) is paid."""

    NO_UPFRONT = "no-upfront"
    PARTIAL_UPFRONT = "partial-upfront"
    ALL_UPFRONT = "all-upfront"


COMMITMENTS = {
    PurchaseOption.SAVINGS_PLAN_1Y: "savings-plan-1y",
    PurchaseOption.SAVINGS_PLAN_3Y: "savings-plan-3y",
    # Standard RIs: AWS quotes the same maximum discount as EC2 Instance Savings Plans (72%);
    # servekit prices them alike (prices-aws.yaml, commitmentDiscount).
    PurchaseOption.RESERVED_1Y: "savings-plan-1y",
    PurchaseOption.RESERVED_3Y: "savings-plan-3y",
}


# --------------------------------------------------------------------------- the price file


class Figure(Frozen):
    """One outside number: its value, where it came from, when, and whether it is uncertain."""

    value: float
    source: str  # a key of the file's ``sources``
    date: date
    uncertain: bool = False
    note: str | None = None
    low: float | None = None
    high: float | None = None

    @property
    def flag(self) -> str:
        return " (U)" if self.uncertain else ""


class RegionFactor(Frozen):
    default: Figure
    families: dict[str, Figure] = Field(default_factory=dict)


class CommitmentGroup(Frozen):
    families: list[str]
    savings_plan_1y: dict[Payment, Figure] = Field(alias="savings-plan-1y")
    savings_plan_3y: dict[Payment, Figure] = Field(alias="savings-plan-3y")

    def discount(self, term: str, payment: Payment) -> Figure:
        table = self.savings_plan_1y if term == "savings-plan-1y" else self.savings_plan_3y
        return table[payment]


class CapacityBlockPrice(Figure):
    instance_type: str
    regions: list[str]


class CapacityBlockPrices(Frozen):
    default_factor: Figure
    prices: list[CapacityBlockPrice]


class FixedPrices(Frozen):
    eks_control_plane_usd_per_hour: Figure
    nat_gateway_usd_per_hour: Figure
    nat_gateway_usd_per_gb: Figure
    interface_endpoint_usd_per_hour_per_az: Figure
    interface_endpoint_usd_per_gb: Figure
    gateway_endpoint_usd_per_hour: Figure
    cloudwatch_logs_ingest_usd_per_gb: Figure
    cloudwatch_logs_storage_usd_per_gb_month: Figure
    cloudwatch_metric_usd_per_month: Figure
    s3_standard_usd_per_gb_month: Figure


class Assumptions(Frozen):
    interface_endpoints: Figure
    nat_gb_per_node_month: Figure
    logs_gb_per_node_month: Figure
    logs_gb_cluster_month: Figure
    logs_retention_months: Figure
    metrics_per_model: Figure


class AwsPrices(Frozen):
    sources: dict[str, Source]
    hours_per_month: Figure
    region_factors: dict[str, RegionFactor]
    spot_discount: dict[str, Figure]
    commitment_discount: dict[str, CommitmentGroup]
    capacity_block: CapacityBlockPrices
    odcr_factor: Figure
    fixed: FixedPrices
    assumptions: Assumptions

    @model_validator(mode="after")
    def _sources_known(self) -> AwsPrices:
        for fig in self.figures():
            if fig.source not in self.sources:
                raise ValueError(f"figure {fig!r} names unknown source {fig.source!r}")
            if fig.value < 0:
                raise ValueError(f"figure {fig!r} is negative")
        for name, f in self.spot_discount.items():
            if not 0 < f.value < 1:
                raise ValueError(f"spotDiscount.{name} must be a fraction between 0 and 1")
        return self

    def figures(self) -> list[Figure]:
        out: list[Figure] = [self.hours_per_month, self.odcr_factor, self.capacity_block.default_factor]
        for r in self.region_factors.values():
            out += [r.default, *r.families.values()]
        out += list(self.spot_discount.values())
        for g in self.commitment_discount.values():
            out += [*g.savings_plan_1y.values(), *g.savings_plan_3y.values()]
        out += list(self.capacity_block.prices)
        out += [getattr(self.fixed, n) for n in FixedPrices.model_fields]
        out += [getattr(self.assumptions, n) for n in Assumptions.model_fields]
        return out

    @property
    def hours(self) -> float:
        return self.hours_per_month.value

    def region_factor(self, region: str, family: str) -> Figure:
        try:
            r = self.region_factors[region]
        except KeyError:
            raise UserError("no price data for region", path="aws:region", given=region,
                            allowed=", ".join(sorted(self.region_factors))) from None
        return r.families.get(family, r.default)

    def commitment(self, family: str, term: str, payment: Payment) -> Figure:
        for g in self.commitment_discount.values():
            if family in g.families:
                return g.discount(term, payment)
        raise UserError("no commitment discount data for instance family", given=family,
                        allowed=", ".join(f for g in self.commitment_discount.values() for f in g.families))

    def spot(self, family: str) -> Figure:
        try:
            return self.spot_discount[family]
        except KeyError:
            raise UserError("no spot discount data for instance family", given=family,
                            allowed=", ".join(self.spot_discount)) from None

    def capacity_block_price(self, instance_type: str, region: str) -> CapacityBlockPrice | None:
        for p in self.capacity_block.prices:
            if p.instance_type == instance_type and region in p.regions:
                return p
        return None


def load_aws_prices(path: Path = AWS_PRICES_FILE) -> AwsPrices:
    return validate_file(AwsPrices, read_yaml(path), path)


@cache
def aws_prices() -> AwsPrices:
    """The shipped AWS price file (cached: read-only)."""
    return load_aws_prices()


# --------------------------------------------------------------------------- node rates


class NodeRate(Frozen):
    """What one node of an instance type costs per hour under a purchase option in a region."""

    usd_per_hour: float
    basis: str  # how it was derived, with flags
    uncertain: bool


def on_demand_rate(inst: InstanceSpec, region: str, prices: AwsPrices | None = None) -> NodeRate:
    """Regional on-demand $/h of one node: us-east-1 price (instances.yaml) x region factor."""
    p = prices or aws_prices()
    factor = p.region_factor(region, inst.family)
    if inst.on_demand_usd_per_hour is None:
        raise UserError(f"{inst.type} has no on-demand price (Capacity Blocks only)", given=inst.type)
    base = f"${inst.on_demand_usd_per_hour:g}/h us-east-1 on-demand ({inst.price_date})"
    if factor.value != 1.0 or region != "us-east-1":
        base += f" x {factor.value:g} {region} factor{factor.flag}"
    return NodeRate(usd_per_hour=inst.on_demand_usd_per_hour * factor.value, basis=base, uncertain=factor.uncertain)


def node_rate(
    inst: InstanceSpec, option: PurchaseOption, region: str, *, payment: Payment = Payment.NO_UPFRONT,
    prices: AwsPrices | None = None,
) -> NodeRate:
    """$/h of one node bought with ``option`` in ``region``."""
    p = prices or aws_prices()
    if option is PurchaseOption.CAPACITY_BLOCK:
        known = p.capacity_block_price(inst.type, region)
        if known is not None:
            return NodeRate(usd_per_hour=known.value, uncertain=known.uncertain,
                            basis=f"capacity block ${known.value:g}/h {region} ({known.date}){known.flag}")
        f = p.capacity_block.default_factor
        od = on_demand_rate(inst, region, p) if inst.on_demand_usd_per_hour is not None else None
        if od is None:
            raise UserError(f"{inst.type} has neither a known capacity-block price in {region} nor an on-demand "
                            "price to derive one from", given=inst.type)
        return NodeRate(usd_per_hour=od.usd_per_hour * f.value, uncertain=True,
                        basis=f"{od.basis} x {f.value:g} capacity-block factor{f.flag}")
    od = on_demand_rate(inst, region, p)
    if option is PurchaseOption.ON_DEMAND:
        return od
    if option is PurchaseOption.ODCR:
        f = p.odcr_factor
        return NodeRate(usd_per_hour=od.usd_per_hour * f.value, uncertain=od.uncertain or f.uncertain,
                        basis=f"{od.basis}; ODCR billed at on-demand, used or not")
    if option is PurchaseOption.SPOT:
        s = p.spot(inst.family)
        return NodeRate(usd_per_hour=od.usd_per_hour * (1 - s.value), uncertain=True,
                        basis=f"{od.basis} x (1 - {s.value:g} typical {inst.family} spot discount{s.flag})")
    term = COMMITMENTS[option]
    d = p.commitment(inst.family, term, payment)
    kind = "reserved" if option in (PurchaseOption.RESERVED_1Y, PurchaseOption.RESERVED_3Y) else "savings plan"
    return NodeRate(usd_per_hour=od.usd_per_hour * (1 - d.value), uncertain=od.uncertain or d.uncertain,
                    basis=f"{od.basis} x (1 - {d.value:g} {option.value} {payment.value} {kind} discount{d.flag})")


# --------------------------------------------------------------------------- node groups


class NodeGroupCost(Frozen):
    """A model's GPU node group for the steady replicas, priced."""

    name: str
    instance_type: str
    nodes: int
    on_demand_nodes: int  # nodes paid at on-demand (spot's on-demand floor)
    option: PurchaseOption
    usd_per_hour: float
    monthly_usd: float
    basis: str
    uncertain: bool


def on_demand_floor_nodes(placement: Placement, deployment: ModelDeployment) -> int:
    """Nodes that host spot's on-demand floor replicas (whole nodes; never more than the group has)."""
    floor = deployment.purchase.on_demand_floor
    if deployment.purchase.option is not PurchaseOption.SPOT or floor == 0:
        return 0
    return min(placement.nodes, math.ceil(floor / placement.replicas_per_node))


def node_group_cost(
    placement: Placement, deployment: ModelDeployment, region: str, *, payment: Payment = Payment.NO_UPFRONT,
    catalog: Catalog | None = None, prices: AwsPrices | None = None,
) -> NodeGroupCost:
    """Whole nodes for the steady replicas (``placement.nodes``), purchase option and region applied."""
    p = prices or aws_prices()
    inst = (catalog or default_catalog()).instances[placement.instance_type]
    option = deployment.purchase.option
    rate = node_rate(inst, option, region, payment=payment, prices=p)
    od_nodes = on_demand_floor_nodes(placement, deployment)
    hourly = rate.usd_per_hour * (placement.nodes - od_nodes)
    basis = f"{placement.nodes - od_nodes} x {inst.type} at {rate.basis}"
    uncertain = rate.uncertain
    if od_nodes:
        od = on_demand_rate(inst, region, p)
        hourly += od.usd_per_hour * od_nodes
        basis += f" + {od_nodes} on-demand floor node(s) at {od.basis}"
        uncertain = uncertain or od.uncertain
    basis += f"; {p.hours:g} h/month"
    return NodeGroupCost(
        name=placement.name, instance_type=inst.type, nodes=placement.nodes, on_demand_nodes=od_nodes,
        option=option, usd_per_hour=hourly, monthly_usd=hourly * p.hours, basis=basis, uncertain=uncertain,
    )


def node_group_monthly_usd(placement: Placement, deployment: ModelDeployment, region: str) -> float:
    """Monthly USD of a model's GPU node group: whole nodes for the steady replicas, purchase option and
    region applied, 730 h/month. Commitments are priced no-upfront. Tagged ``servekit:monthly-cost-usd``."""
    return node_group_cost(placement, deployment, region).monthly_usd


__all__ = [
    "AwsPrices", "Figure", "NodeGroupCost", "NodeRate", "Payment", "aws_prices", "load_aws_prices",
    "node_group_cost", "node_group_monthly_usd", "node_rate", "on_demand_rate",
]
