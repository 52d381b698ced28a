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
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from servekit.catalog import Catalog, default_catalog, read_yaml, validate_file
from servekit.errors import UserError
from servekit.sizing import Placement
from servekit.spec import (
    DeploymentSpec,
    Egress,
    Frozen,
    InstanceSpec,
    ModelDeployment,
    ModelSource,
    Payment,
    PurchaseOption,
    Source,
)
from servekit.topology import INTERFACE_ENDPOINTS, SYSTEM_NODES
from servekit.workloads import profile

DATA_DIR = Path(__file__).parent / "data"
AWS_PRICES_FILE = DATA_DIR / "prices-aws.yaml"


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
    nat_gb_per_node_month: Figure
    logs_gb_per_node_month: Figure
    flow_logs_gb_per_node_month: Figure
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
    system_instances: dict[str, Figure]
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
        out += list(self.system_instances.values())
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
    placement: Placement, deployment: ModelDeployment, region: str, *, payment: Payment | None = None,
    catalog: Catalog | None = None, prices: AwsPrices | None = None,
) -> NodeGroupCost:
    """Whole nodes for the steady replicas (``placement.nodes``), purchase option and region applied.

    ``payment`` overrides the stack's ``purchase.payment`` (what-if pricing from the CLI).
    """
    p = prices or aws_prices()
    inst = (catalog or default_catalog()).instances[placement.instance_type]
    option = deployment.purchase.option
    rate = node_rate(inst, option, region, payment=payment or deployment.purchase.payment, prices=p)
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




# --------------------------------------------------------------------------- purchase rules


def check_purchase(
    spec: DeploymentSpec, placements: list[Placement], file: str | Path, *, catalog: Catalog | None = None,
    today: date | None = None,
) -> None:
    """Refuse purchase choices that cannot work; a UserError names the stack file and the dotted path.

    - spot for an SLA-gated prod model needs ``purchase.onDemandFloor >= 1`` (an interruption would
      otherwise take away the capacity the SLA gate measured);
    - a capacity block needs a Capacity-Block-eligible instance type, an end date still ahead, at most
      64 instances, and - because it is one reservation in one AZ - ``spreadAcrossZones: false`` when
      it holds more than one replica;
    - an ODCR lives in one AZ too, so the same spreading rule applies.
    """
    cat = catalog or default_catalog()
    today = today or date.today()
    by_name = {p.name: p for p in placements}
    for i, dep in enumerate(spec.models):
        where = f"config.servekit:models[{i}].purchase"
        pur = dep.purchase
        placement = by_name.get(dep.name)
        if pur.option is PurchaseOption.SPOT and spec.environment == "prod" and spec.sla_gate \
                and pur.on_demand_floor < 1:
            raise UserError(
                f"spot is refused for {dep.name}: it is an SLA-gated prod model and a spot interruption would "
                "remove the capacity its SLA was verified on", file=file, path=f"{where}.onDemandFloor",
                given=pur.on_demand_floor, allowed="onDemandFloor >= 1 (replicas kept on on-demand), or a "
                "non-spot option")
        if placement is None:
            continue
        inst = cat.instances[placement.instance_type]
        if pur.option is PurchaseOption.CAPACITY_BLOCK:
            if not inst.capacity_block:
                eligible = ", ".join(t for t, x in cat.instances.items() if x.capacity_block)
                raise UserError(f"capacity blocks are not sold for {inst.type} (placed for {dep.name})",
                                file=file, path=f"{where}.option", given=pur.option.value,
                                allowed=f"capacity-block only on {eligible}; pin instanceType to one of them")
            if pur.end_date is None:
                raise UserError("a capacity block needs an end date", file=file, path=f"{where}.endDate")
            if pur.end_date <= today:
                raise UserError(f"the capacity block for {dep.name} has already ended", file=file,
                                path=f"{where}.endDate", given=pur.end_date.isoformat(),
                                allowed=f"a date after {today.isoformat()}")
            if placement.max_nodes > 64:
                raise UserError(f"{dep.name} needs {placement.max_nodes} nodes; a capacity block holds at most 64",
                                file=file, path=f"{where}.option", given=pur.option.value)
        if pur.option in (PurchaseOption.CAPACITY_BLOCK, PurchaseOption.ODCR) and dep.spread_across_zones \
                and placement.nodes >= 2:
            raise UserError(
                f"{dep.name}: a {pur.option.value} is capacity in one AZ ({pur.availability_zone}), so its "
                f"{placement.nodes} nodes cannot spread across zones",
                file=file, path=f"config.servekit:models[{i}].spreadAcrossZones", given=True,
                allowed="false (accept the single-AZ risk), or a purchase option not tied to one AZ")


# --------------------------------------------------------------------------- API prices


API_PRICES_FILE = DATA_DIR / "prices-api.yaml"
REFERENCE_API = "gpt-4o"  # the API the field report's team was paying for


class ApiOption(Frozen):
    """A per-token alternative to self-hosting (an API, or a managed open-model endpoint)."""

    name: str
    kind: Literal["api", "managed"]
    input_usd_per_million: Figure | None = None
    output_usd_per_million: Figure | None = None
    blended_usd_per_million: Figure | None = None

    @model_validator(mode="after")
    def _priced(self) -> ApiOption:
        split = self.input_usd_per_million is not None and self.output_usd_per_million is not None
        if split == (self.blended_usd_per_million is not None):
            raise ValueError("give either inputUsdPerMillion and outputUsdPerMillion, or blendedUsdPerMillion")
        return self

    def usd_per_request(self, input_tokens: float, output_tokens: float) -> float:
        if self.blended_usd_per_million is not None:
            return (input_tokens + output_tokens) * self.blended_usd_per_million.value / 1e6
        assert self.input_usd_per_million is not None and self.output_usd_per_million is not None
        return (input_tokens * self.input_usd_per_million.value
                + output_tokens * self.output_usd_per_million.value) / 1e6

    def usd_per_million_output_tokens(self, input_tokens: float, output_tokens: float) -> float:
        """What a million output tokens cost, carrying the input tokens that come with them."""
        return self.usd_per_request(input_tokens, output_tokens) / output_tokens * 1e6

    def price_text(self) -> str:
        if self.blended_usd_per_million is not None:
            return f"${self.blended_usd_per_million.value:g}/1M tokens blended{self.blended_usd_per_million.flag}"
        assert self.input_usd_per_million is not None and self.output_usd_per_million is not None
        return (f"${self.input_usd_per_million.value:g}/1M input + "
                f"${self.output_usd_per_million.value:g}/1M output")


class ApiPrices(Frozen):
    sources: dict[str, Source]
    options: dict[str, ApiOption]

    @model_validator(mode="after")
    def _sources_known(self) -> ApiPrices:
        for key, o in self.options.items():
            for f in (o.input_usd_per_million, o.output_usd_per_million, o.blended_usd_per_million):
                if f is not None and f.source not in self.sources:
                    raise ValueError(f"options.{key} names unknown source {f.source!r}")
        if REFERENCE_API not in self.options:
            raise ValueError(f"options must include {REFERENCE_API}")
        return self


@cache
def api_prices(path: Path = API_PRICES_FILE) -> ApiPrices:
    return validate_file(ApiPrices, read_yaml(path), path)


# --------------------------------------------------------------------------- stack cost

# Utilization servekit states for $/1M tokens: replicas are sized for the peak, and interactive
# traffic averages about half its peak over a day (a peak-to-average ratio of 2, the same figure
# `servekit tco` assumes), so a replica sized for the peak is busy about half the time.
DEFAULT_UTILIZATION = 0.5
GIB_IN_GB = 1024**3 / 1e9


class CostLine(Frozen):
    item: str
    monthly_usd: float
    basis: str
    kind: Literal["node-group", "fixed"]
    uncertain: bool


class ModelCost(Frozen):
    """A model's node group against the reference API, per million output tokens."""

    name: str
    model: str
    instance_type: str
    purchase: PurchaseOption
    monthly_usd: float
    sustained_output_tokens_per_second: float  # placement.output_tokens_per_second x replicas
    usd_per_million_output_tokens: float  # at the sustainable throughput, busy every hour
    utilization: float
    usd_per_million_output_tokens_at_utilization: float
    api: str
    api_usd_per_million_output_tokens: float  # with the workload's input tokens folded in
    break_even_utilization: float  # above this the node group beats the API (> 1: never)
    basis: str


class StackCost(Frozen):
    stack: str
    region: str
    monthly_usd: float
    lines: list[CostLine]
    models: list[ModelCost]
    budget_monthly_usd: float | None
    over_budget: bool
    hours_per_month: float

    def cli_json(self) -> dict[str, object]:
        """``servekit cost --json``: {stack, monthlyUsd, lines:[{item, monthlyUsd, basis}], models:[...]}."""
        return self.to_json()


def _fig(f: Figure, unit: str) -> str:
    return f"${f.value:g}{unit}{f.flag}"


def nat_gateways(spec: DeploymentSpec) -> int:
    """NAT gateways the network creates (the rule lives on DeploymentSpec.nat_gateways)."""
    return spec.nat_gateways


def fixed_lines(spec: DeploymentSpec, placements: list[Placement], prices: AwsPrices | None = None) -> list[CostLine]:
    """Non-GPU lines: EKS, system nodes, NAT or VPC endpoints, CloudWatch, the S3 model store."""
    p = prices or aws_prices()
    fx, a, h = p.fixed, p.assumptions, p.hours
    azs = spec.network.az_count
    region_note = "" if spec.region == "us-east-1" else f" (us-east-1 unit price used for {spec.region}, U)"
    deps = {d.name: d for d in spec.models}
    gpu_nodes = sum(pl.nodes for pl in placements)
    lines: list[CostLine] = []

    def add(item: str, usd: float, basis: str, uncertain: bool = True) -> None:
        lines.append(CostLine(item=item, monthly_usd=usd, basis=basis + region_note, kind="fixed", uncertain=uncertain))

    add("EKS control plane", fx.eks_control_plane_usd_per_hour.value * h,
        f"1 cluster x {_fig(fx.eks_control_plane_usd_per_hour, '/h')} x {h:g} h (standard support)")
    sys_nodes = SYSTEM_NODES[1]  # the system node group's desired size
    sys_type = spec.cluster.system_instance_type
    sys_price = p.system_instances.get(sys_type)
    if sys_price is None:
        raise UserError("no price data for the system instance type", path="config.servekit:cluster.systemInstanceType",
                        given=sys_type, allowed=", ".join(p.system_instances))
    factor = p.region_factor(spec.region, sys_type.split(".", 1)[0])
    lines.append(CostLine(
        item=f"System nodes ({sys_nodes} x {sys_type})", kind="fixed", uncertain=True,
        monthly_usd=sys_nodes * sys_price.value * factor.value * h,
        basis=f"{sys_nodes} nodes (the system node group's desired size) x {_fig(sys_price, '/h')}"
              + (f" x {factor.value:g} {spec.region} factor{factor.flag}" if factor.value != 1 else "") + f" x {h:g} h",
    ))
    if spec.network.egress is Egress.NAT:
        nats = nat_gateways(spec)
        add(f"NAT gateways ({nats})", nats * fx.nat_gateway_usd_per_hour.value * h,
            f"{nats} x {_fig(fx.nat_gateway_usd_per_hour, '/h')} x {h:g} h ("
            + ("one for all AZs in a dev stack" if nats == 1 else f"one per AZ over {azs} AZs") + ")")
        hf_gb = sum(pl.nodes * pl.weights_gib * GIB_IN_GB for pl in placements
                    if deps.get(pl.name) is not None and deps[pl.name].source is ModelSource.HF)
        gb = gpu_nodes * a.nat_gb_per_node_month.value + hf_gb
        add("NAT data processing", gb * fx.nat_gateway_usd_per_gb.value,
            f"{gb:,.0f} GB x {_fig(fx.nat_gateway_usd_per_gb, '/GB')}: {gpu_nodes} GPU nodes x "
            f"{a.nat_gb_per_node_month.value:g} GB images/updates (assumed) + {hf_gb:,.0f} GB of hf weights "
            "(one download per node per month, assumed)")
    else:
        n = len(INTERFACE_ENDPOINTS)
        add(f"Interface endpoints ({n} x {azs} AZs)", n * azs * fx.interface_endpoint_usd_per_hour_per_az.value * h,
            f"{n} endpoints ({', '.join(INTERFACE_ENDPOINTS)}) x {azs} AZs x "
            f"{_fig(fx.interface_endpoint_usd_per_hour_per_az, '/h')} x {h:g} h")
        gb = gpu_nodes * a.nat_gb_per_node_month.value
        add("Interface endpoint data", gb * fx.interface_endpoint_usd_per_gb.value,
            f"{gb:,.0f} GB x {_fig(fx.interface_endpoint_usd_per_gb, '/GB')} ({gpu_nodes} GPU nodes x "
            f"{a.nat_gb_per_node_month.value:g} GB, assumed)")
    add("S3 gateway endpoint", fx.gateway_endpoint_usd_per_hour.value * h, "gateway endpoints have no charge")
    nodes = gpu_nodes + sys_nodes
    per_node = a.logs_gb_per_node_month.value + a.flow_logs_gb_per_node_month.value
    log_gb = nodes * per_node + a.logs_gb_cluster_month.value
    stored = log_gb * a.logs_retention_months.value
    add("CloudWatch logs", log_gb * fx.cloudwatch_logs_ingest_usd_per_gb.value
        + stored * fx.cloudwatch_logs_storage_usd_per_gb_month.value,
        f"{log_gb:g} GB/month ingested x {_fig(fx.cloudwatch_logs_ingest_usd_per_gb, '/GB')} + {stored:g} GB stored "
        f"({a.logs_retention_months.value:g} months) x "
        f"{_fig(fx.cloudwatch_logs_storage_usd_per_gb_month, '/GB-month')}; "
        f"{nodes} nodes x ({a.logs_gb_per_node_month.value:g} GB node/pod + {a.flow_logs_gb_per_node_month.value:g} GB "
        f"VPC flow logs) + {a.logs_gb_cluster_month.value:g} GB control plane (assumed)")
    metrics = len(spec.models) * a.metrics_per_model.value
    add("CloudWatch metrics", metrics * fx.cloudwatch_metric_usd_per_month.value,
        f"{metrics:g} custom metrics ({a.metrics_per_model.value:g} per model, assumed) x "
        f"{_fig(fx.cloudwatch_metric_usd_per_month, '/metric-month')}")
    store = [(pl.name, pl.weights_gib * GIB_IN_GB) for pl in placements
             if deps.get(pl.name) is not None and deps[pl.name].source is ModelSource.S3]
    if store:
        gb = sum(g for _, g in store)
        add("S3 model store", gb * fx.s3_standard_usd_per_gb_month.value,
            f"{gb:,.1f} GB of weights ({', '.join(f'{n} {g:,.1f} GB' for n, g in store)}) x "
            f"{_fig(fx.s3_standard_usd_per_gb_month, '/GB-month')}")
    return lines


def model_cost(
    placement: Placement, deployment: ModelDeployment, group: NodeGroupCost, *,
    utilization: float = DEFAULT_UTILIZATION, api: str = REFERENCE_API,
) -> ModelCost:
    """$/1M output tokens of a node group at its sustainable throughput under the SLA, and vs the API."""
    if not 0 < utilization <= 1:
        raise UserError("utilization must be in (0, 1]", given=utilization)
    shape = profile(deployment.sla.workload)
    tokens_per_s = placement.output_tokens_per_second * placement.replicas
    tokens_month = tokens_per_s * 3600 * aws_prices().hours
    at_full = group.monthly_usd / tokens_month * 1e6
    ref = api_prices().options[api]
    api_per_m = ref.usd_per_million_output_tokens(shape.prompt_mean_tokens, shape.output_tokens)
    return ModelCost(
        name=placement.name, model=placement.model, instance_type=placement.instance_type,
        purchase=deployment.purchase.option, monthly_usd=group.monthly_usd,
        sustained_output_tokens_per_second=tokens_per_s,
        usd_per_million_output_tokens=at_full, utilization=utilization,
        usd_per_million_output_tokens_at_utilization=at_full / utilization,
        api=api, api_usd_per_million_output_tokens=api_per_m,
        break_even_utilization=at_full / api_per_m,
        basis=(f"${group.monthly_usd:,.0f}/month / ({placement.replicas} replicas x "
               f"{placement.output_tokens_per_second:,.0f} output tok/s at SLA batch "
               f"{deployment.sla.concurrency_per_replica}); {ref.name} {ref.price_text()} with the "
               f"{deployment.sla.workload.value} workload's {shape.prompt_mean_tokens:,.0f} input tokens per "
               f"{shape.output_tokens} output tokens"),
    )


def stack_cost(
    spec: DeploymentSpec, placements: list[Placement], *, utilization: float = DEFAULT_UTILIZATION,
    payment: Payment | None = None, catalog: Catalog | None = None,
) -> StackCost:
    """Monthly cost of a stack: a line per GPU node group and per fixed item; per model $/1M output tokens."""
    deps = {d.name: d for d in spec.models}
    lines: list[CostLine] = []
    models: list[ModelCost] = []
    for pl in placements:
        dep = deps[pl.name]
        group = node_group_cost(pl, dep, spec.region, payment=payment, catalog=catalog)
        lines.append(CostLine(item=f"GPU node group {pl.name} ({pl.nodes} x {pl.instance_type}, "
                                   f"{dep.purchase.option.value})",
                              monthly_usd=group.monthly_usd, basis=group.basis, kind="node-group",
                              uncertain=group.uncertain))
        models.append(model_cost(pl, dep, group, utilization=utilization))
    lines += fixed_lines(spec, placements)
    total = sum(line.monthly_usd for line in lines)
    budget = spec.budget_monthly_usd
    return StackCost(stack=spec.stack, region=spec.region, monthly_usd=total, lines=lines, models=models,
                     budget_monthly_usd=budget, over_budget=budget is not None and total > budget,
                     hours_per_month=aws_prices().hours)
