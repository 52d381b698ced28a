"""GPU node groups: one managed node group per (GPU type, purchase choice), sized from placements.

Pools are planned in pure Python first (:func:`plan_pools`, before any resource, so a stack that cannot
work fails with one message), then :class:`GpuNodes` creates a launch template and a managed node group
per pool, plus the NVIDIA device plugin where the AMI needs it.

Purchase choice -> node group:

=====================================  ==================  ==========================================
option                                 capacityType        launch template / subnets
=====================================  ==================  ==========================================
on-demand, savings-plan-*, reserved-*  ON_DEMAND           billing-only choices: same resources, tagged
spot                                   SPOT                several instance types: same GPU, same GPU
                                                           count, at least the placed type's CPU/memory
odcr                                   ON_DEMAND           capacity reservation target (id or group);
                                                           subnets of the reservation's AZ only
capacity-block                         CAPACITY_BLOCK      market type ``capacity-block`` + reservation
                                                           id + instance type; reservation's AZ only
=====================================  ==================  ==========================================

A spot model with ``purchase.onDemandFloor`` puts the floor's nodes into the on-demand pool of its
instance type (``servekit.cost.on_demand_floor_nodes`` decides how many) and the rest on spot.

Pools are keyed by purchase choice (with its reservation) and instance type: two models on the same
GPU and purchase share a node group when they were placed on the same instance type; a different size
gets its own group, because the Kubernetes side fits pod requests to the placed type's allocatable.
Node counts: desired = min = the sum of the members' steady nodes (``Placement.nodes``), max = the sum
of their ``max_nodes`` (autoscaling bound) plus one node of rollout headroom (not for reservations); a
capacity-block pool has min 0 (EKS scales it to zero before the block ends). Nothing here scales
nodes: the bounds are for a cluster autoscaler or Karpenter, which this kit does not install.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components._common import (
    TAG_GPU,
    TAG_MODEL,
    TAG_MONTHLY_COST,
    TAG_PURCHASE,
    child,
    node_launch_template,
    with_tags,
)
from servekit.catalog import Catalog
from servekit.cost import node_group_monthly_usd, on_demand_floor_nodes
from servekit.errors import UserError
from servekit.offerings import usable_zones
from servekit.sizing import Placement
from servekit.spec import DeploymentSpec, ModelDeployment, NodeOs, Purchase, PurchaseOption

GPU_AMI = {NodeOs.AL2023: "AL2023_x86_64_NVIDIA", NodeOs.BOTTLEROCKET: "BOTTLEROCKET_x86_64_NVIDIA"}
GPU_TAINT = "nvidia.com/gpu"
LABEL_GPU = "servekit.io/gpu"
LABEL_POOL = "servekit.io/pool"
LABEL_PURCHASE = "servekit.io/purchase"

# Node volume: OS, kubelet, logs and the vLLM image (~10 GiB compressed, ~25 GiB unpacked) fit in the
# base; each replica a node can host may keep its own copy of the weights (emptyDir) - plus headroom for
# the download's temporary files. gp3 at its maximum throughput and high IOPS: loading 130 GiB of
# weights at gp3's default 125 MiB/s takes ~18 minutes, at 1000 MiB/s ~2.5 (a few $10/month per node).
VOLUME_BASE_GIB = 80
WEIGHTS_HEADROOM = 1.15
VOLUME_IOPS = 16000
VOLUME_THROUGHPUT_MIBPS = 1000
# Node-group headroom above the autoscaling bound, so a rolling update (maxSurge 1) has a node to
# surge onto where nodes hold one replica; reservations (ODCR, capacity block) have no spare capacity.
ROLLOUT_SURGE_NODES = 1
# Spot diversification: sibling types cost at most this multiple of the placed type on demand.
SPOT_SIBLING_PRICE_CAP = 2.0

# NVIDIA device plugin (AL2023 NVIDIA AMIs ship drivers and container toolkit, not the plugin).
DEVICE_PLUGIN_CHART = "nvidia-device-plugin"
DEVICE_PLUGIN_VERSION = "0.18.0"  # chart and image v0.18.0 (NVIDIA/k8s-device-plugin release, 2025-10)
DEVICE_PLUGIN_REPO = "https://nvidia.github.io/k8s-device-plugin"

CAPACITY_TYPE = {PurchaseOption.SPOT: "SPOT", PurchaseOption.CAPACITY_BLOCK: "CAPACITY_BLOCK"}
RESERVED = (PurchaseOption.ODCR, PurchaseOption.CAPACITY_BLOCK)


@dataclass(frozen=True)
class PoolMember:
    """One model's share of a pool."""

    model: str
    nodes: int
    max_nodes: int
    monthly_usd: float


@dataclass(frozen=True)
class NodePool:
    name: str
    gpu_type: str
    gpus_per_node: int
    instance_types: tuple[str, ...]  # the placed type first
    option: PurchaseOption
    zones: tuple[str, ...]
    volume_gib: int
    members: tuple[PoolMember, ...]
    reservation_id: str | None = None
    reservation_resource_group_arn: str | None = None

    @property
    def capacity_type(self) -> str:
        return CAPACITY_TYPE.get(self.option, "ON_DEMAND")

    @property
    def market_type(self) -> str | None:
        return "capacity-block" if self.option is PurchaseOption.CAPACITY_BLOCK else None

    @property
    def desired_nodes(self) -> int:
        return sum(m.nodes for m in self.members)

    @property
    def max_nodes(self) -> int:
        surge = 0 if self.option in RESERVED else ROLLOUT_SURGE_NODES
        return max(sum(m.max_nodes for m in self.members), self.desired_nodes, 1) + surge

    @property
    def min_nodes(self) -> int:
        return 0 if self.option is PurchaseOption.CAPACITY_BLOCK else self.desired_nodes

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.model for m in self.members))

    @property
    def monthly_usd(self) -> float:
        return sum(m.monthly_usd for m in self.members)

    def tags(self, base: Mapping[str, str]) -> dict[str, str]:
        return with_tags(base, **{
            TAG_GPU: self.gpu_type, TAG_PURCHASE: self.option.value, TAG_MODEL: ",".join(self.models),
            TAG_MONTHLY_COST: f"{self.monthly_usd:.2f}", "servekit:pool": self.name,
        })


@dataclass
class _Draft:
    gpu_type: str
    gpus_per_node: int
    instance_types: tuple[str, ...]
    option: PurchaseOption
    zones: tuple[str, ...]
    reservation_id: str | None
    reservation_resource_group_arn: str | None
    volume_gib: int = 0
    members: list[PoolMember] = field(default_factory=list)


def volume_gib(placement: Placement) -> int:
    """Node volume for a placement: base + a copy of the weights per replica the node can host."""
    need = VOLUME_BASE_GIB + placement.weights_gib * placement.replicas_per_node * WEIGHTS_HEADROOM
    return int(math.ceil(need / 10.0) * 10)


def spot_types(placement: Placement, catalog: Catalog, region: str, zones: Sequence[str]) -> list[str]:
    """The placed type plus catalog siblings: same GPU, same GPU count, no less CPU or memory, offered in
    one of ``zones``, priced on demand within SPOT_SIBLING_PRICE_CAP of the placed type; cheapest first."""
    from servekit.offerings import offered_zones

    placed = catalog.instances[placement.instance_type]
    cap = (placed.on_demand_usd_per_hour or math.inf) * SPOT_SIBLING_PRICE_CAP
    siblings = sorted(
        (i for i in catalog.instances.values()
         if i.type != placed.type and i.gpu == placed.gpu and i.gpus == placed.gpus and i.vcpu >= placed.vcpu
         and i.memory_gib >= placed.memory_gib and i.on_demand_usd_per_hour is not None
         and i.on_demand_usd_per_hour <= cap and set(offered_zones(i.type, region)) & set(zones)),
        key=lambda i: (i.on_demand_usd_per_hour or math.inf, i.type))
    return [placed.type, *(i.type for i in siblings)]


def plan_pools(
    spec: DeploymentSpec, placements: Sequence[Placement], *, catalog: Catalog, vpc_zones: Sequence[str],
    file: str | None = None,
) -> tuple[list[NodePool], list[str]]:
    """Group the placements into node pools; UserError when a purchase choice cannot be built."""
    by_name = {p.name: p for p in placements}
    drafts: dict[tuple[object, ...], _Draft] = {}
    warnings: list[str] = []

    def add(dep: ModelDeployment, p: Placement, option: PurchaseOption, types: tuple[str, ...],
            zones: Sequence[str], member: PoolMember) -> None:
        pur = dep.purchase if option in RESERVED else Purchase(option=option)
        key = (option.value, p.instance_type, pur.reservation_id, pur.reservation_resource_group_arn,
               pur.availability_zone if option in RESERVED else None)
        d = drafts.get(key)
        if d is None:
            d = drafts[key] = _Draft(p.gpu_type, p.gpus_per_node, types, option, tuple(zones), pur.reservation_id,
                                     pur.reservation_resource_group_arn)
        d.volume_gib = max(d.volume_gib, volume_gib(p))
        d.members.append(member)

    for i, dep in enumerate(spec.models):
        p = by_name[dep.name]
        where = f"config.servekit:models[{i}]"
        option = dep.purchase.option
        reserved = option in RESERVED
        zones = usable_zones(
            p.instance_type, spec.region, vpc_zones,
            reservation_zone=dep.purchase.availability_zone if reserved else None,
            where=f"{where}.purchase.availabilityZone" if reserved else f"{where}.instanceType", file=file)
        if not reserved and len(zones) < 2 and p.nodes >= 2 and dep.spread_across_zones:
            warnings.append(f"{dep.name}: {p.instance_type} is offered in only {zones[0]} of the VPC's AZs; its "
                            f"{p.nodes} nodes cannot spread across zones (raise network.azCount)")
        if option is PurchaseOption.SPOT:
            types = spot_types(p, catalog, spec.region, zones)
            if len(types) < 2:
                raise UserError(
                    f"spot for {dep.name} needs at least two instance types with {p.gpus_per_node} x {p.gpu_type} "
                    f"to diversify over; the catalog offers only {p.instance_type} in {', '.join(zones)}",
                    file=file, path=f"{where}.purchase.option", given=option.value,
                    allowed="on-demand, a savings plan or reservation, or gpus/instanceType allowing a GPU with "
                            "several instance types")
            floor = on_demand_floor_nodes(p, dep)
            spot_nodes = p.nodes - floor
            spot_max = max(p.max_nodes - floor, spot_nodes)
            if spot_nodes or spot_max:
                spot_dep = dep.model_copy(update={"purchase": dep.purchase.model_copy(update={"on_demand_floor": 0})})
                cost = node_group_monthly_usd(p.model_copy(update={"nodes": spot_nodes}), spot_dep, spec.region)
                add(dep, p, option, tuple(types), zones, PoolMember(dep.name, spot_nodes, spot_max, cost))
            if floor:
                od_dep = dep.model_copy(update={"purchase": Purchase(option=PurchaseOption.ON_DEMAND)})
                cost = node_group_monthly_usd(p.model_copy(update={"nodes": floor}), od_dep, spec.region)
                add(dep, p, PurchaseOption.ON_DEMAND, (p.instance_type,), zones,
                    PoolMember(dep.name, floor, floor, cost))
            continue
        cost = node_group_monthly_usd(p, dep, spec.region)
        add(dep, p, option, (p.instance_type,), zones, PoolMember(dep.name, p.nodes, p.max_nodes, cost))

    names = _pool_names(list(drafts.values()))
    pools = [NodePool(name=n, gpu_type=d.gpu_type, gpus_per_node=d.gpus_per_node, instance_types=d.instance_types,
                      option=d.option, zones=d.zones, volume_gib=d.volume_gib, members=tuple(d.members),
                      reservation_id=d.reservation_id, reservation_resource_group_arn=d.reservation_resource_group_arn)
             for n, d in zip(names, drafts.values(), strict=True)]
    return pools, warnings


def _pool_names(drafts: Sequence[_Draft]) -> list[str]:
    """``<gpu>-<option>``; ``<gpu>-<instance size>-<option>`` where that repeats; an index if still not unique."""
    base = [f"{d.gpu_type}-{d.option.value}" for d in drafts]
    names = [b if base.count(b) == 1 else
             f"{d.gpu_type}-{d.instance_types[0].replace('.', '-')}-{d.option.value}" for b, d in zip(base, drafts,
                                                                                                      strict=True)]
    out: list[str] = []
    for n in names:
        out.append(n if names.count(n) == 1 else f"{n}-{sum(1 for o in out if o.startswith(n)) + 1}")
    return out


@dataclass(frozen=True)
class GpuNodesArgs:
    pools: Sequence[NodePool]
    node_os: NodeOs
    cluster_name: pulumi.Input[str]
    node_role_arn: pulumi.Input[str]
    subnet_ids: Mapping[str, pulumi.Input[str]]  # zone -> private subnet id
    tags: Mapping[str, str]
    k8s_provider: k8s.Provider
    depends_on: Sequence[pulumi.Resource] = ()  # add-ons (CNI) and the system node group
    device_plugin_image: str | None = None  # a mirror (e.g. an ECR pull-through cache) for nvcr.io's image


class GpuNodes(pulumi.ComponentResource):
    """A launch template and a managed node group per pool; the NVIDIA device plugin on AL2023."""

    node_groups: dict[str, aws.eks.NodeGroup]
    launch_templates: dict[str, aws.ec2.LaunchTemplate]
    device_plugin: k8s.helm.v3.Release | None

    def __init__(self, name: str, args: GpuNodesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:gpu_nodes:GpuNodes", name, {}, opts)
        bottlerocket = args.node_os is NodeOs.BOTTLEROCKET
        self.node_groups = {}
        self.launch_templates = {}
        for pool in args.pools:
            tags = pool.tags(args.tags)
            cb = pool.option is PurchaseOption.CAPACITY_BLOCK
            lt = node_launch_template(
                f"{name}-{pool.name}", parent=self, bottlerocket=bottlerocket, volume_gib=pool.volume_gib, tags=tags,
                iops=VOLUME_IOPS, throughput_mibps=VOLUME_THROUGHPUT_MIBPS,
                instance_type=pool.instance_types[0] if cb else None, market_type=pool.market_type,
                reservation_id=pool.reservation_id, reservation_resource_group_arn=pool.reservation_resource_group_arn)
            self.launch_templates[pool.name] = lt
            self.node_groups[pool.name] = aws.eks.NodeGroup(
                f"{name}-{pool.name}",
                cluster_name=args.cluster_name,
                node_role_arn=args.node_role_arn,
                subnet_ids=[args.subnet_ids[z] for z in pool.zones],
                ami_type=GPU_AMI[args.node_os],
                capacity_type=pool.capacity_type,
                instance_types=None if cb else list(pool.instance_types),  # a capacity block's type is in the LT
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                    min_size=pool.min_nodes, desired_size=pool.desired_nodes, max_size=pool.max_nodes),
                update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
                launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=lt.id, version=lt.latest_version.apply(str)),
                labels={LABEL_GPU: pool.gpu_type, LABEL_POOL: pool.name, LABEL_PURCHASE: pool.option.value},
                taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT, value="true", effect="NO_SCHEDULE")],
                tags=tags,
                opts=child(self, depends_on=list(args.depends_on), ignore_changes=["scalingConfig.desiredSize"]),
            )

        self.device_plugin = None
        if args.pools and not bottlerocket:  # Bottlerocket's NVIDIA variant has the plugin built in
            values: dict[str, object] = {
                "tolerations": [{"key": GPU_TAINT, "operator": "Exists", "effect": "NoSchedule"}],
                # The chart's default affinity wants NFD/GFD labels EKS nodes lack; select our GPU nodes.
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": LABEL_GPU, "operator": "Exists"}]}]}}},
                "priorityClassName": "system-node-critical",
            }
            if args.device_plugin_image:
                values["image"] = {"repository": args.device_plugin_image}
            self.device_plugin = k8s.helm.v3.Release(
                f"{name}-nvidia-device-plugin",
                chart=DEVICE_PLUGIN_CHART,
                version=DEVICE_PLUGIN_VERSION,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=DEVICE_PLUGIN_REPO),
                namespace="kube-system",
                values=values,
                opts=child(self, provider=args.k8s_provider, depends_on=list(args.depends_on)),
            )

        self.register_outputs({"nodeGroups": {n: g.node_group_name for n, g in self.node_groups.items()}})
