"""Preflight: can this AWS account actually get the GPUs the stack needs? (boto3, read-only calls)

Checks, in order:

1. ``identity``     sts GetCallerIdentity: the credentials work (else: exit 3, the environment is missing).
2. ``region``       ec2 DescribeRegions: the stack's region is enabled for the account.
3. ``offerings``    ec2 DescribeInstanceTypeOfferings: each GPU instance type is offered in the VPC's AZs
                    (in the reservation's AZ for odcr / capacity-block; in >= 2 AZs when replicas spread).
4. ``quota``        service-quotas GetServiceQuota (falling back to GetAWSDefaultServiceQuota): the vCPU
                    quota of each instance family bucket against what the stack's ``max_nodes`` need, with
                    the quota code and the value to request.
5. ``reservation``  ec2 DescribeCapacityReservations: each referenced ODCR / capacity block exists, is
                    active (a capacity block may still be scheduled), is in the right AZ, for the right
                    instance type, large enough, and does not end inside the stack's window.
6. ``capacity-block-offerings``  ec2 DescribeCapacityBlockOfferings for a requested duration, for every model
                    placed on a Capacity-Block-eligible type (only when a duration is asked for).
7. ``eks-version``  eks DescribeClusterVersions: the stack's Kubernetes version is offered (extended
                    support costs 6x the control-plane rate: a warning).
8. ``prices``       optional: pricing GetProducts for the stack's instance types; writes a dated price file
                    and warns where the live price differs from the kit's by more than 5%.

Every client honours ``AWS_ENDPOINT_URL`` (tests point them at moto on 127.0.0.1).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import boto3
import botocore.exceptions
import yaml
from botocore.config import Config

from servekit.catalog import Catalog, default_catalog
from servekit.cost import on_demand_floor_nodes, on_demand_rate
from servekit.errors import EnvironmentMissing
from servekit.regions import vpc_zones
from servekit.sizing import Placement
from servekit.spec import DeploymentSpec, Frozen, PurchaseOption
from servekit.topology import SYSTEM_NODES

Status = Literal["pass", "fail", "warn", "skip"]

# EC2 vCPU quotas by instance-family bucket (Service Quotas, service code ec2).
QUOTAS: dict[tuple[str, bool], tuple[str, str]] = {
    ("gvt", False): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("p", False): ("L-417A185B", "Running On-Demand P instances"),
    ("standard", False): ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("gvt", True): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("p", True): ("L-7212CCBC", "All P Spot Instance Requests"),
    ("standard", True): ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
}
SYSTEM_NODES_MAX = SYSTEM_NODES[2]  # what the system node group can scale to
DEFAULT_WINDOW_DAYS = 30  # an ODCR must outlast this when the stack has no end date
USABLE_RESERVATION_STATES = {"active"}
USABLE_BLOCK_STATES = {"active", "scheduled", "payment-pending"}


class Check(Frozen):
    id: str
    subject: str
    status: Status
    message: str


class PreflightReport(Frozen):
    stack: str
    region: str
    account: str | None
    checks: list[Check]

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]


@dataclass
class Clients:
    """The boto3 clients preflight uses; ``capacity`` defaults to ``ec2`` (a separate one lets tests stub
    the calls moto lacks while moto answers the rest)."""

    sts: Any
    ec2: Any
    quotas: Any
    eks: Any
    capacity: Any = None
    pricing: Any = None

    def __post_init__(self) -> None:
        if self.capacity is None:
            self.capacity = self.ec2


def make_clients(region: str) -> Clients:
    """boto3 clients for ``region``; exit 3 when no credentials can be found."""
    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        raise EnvironmentMissing(
            "no AWS credentials found (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, SSO or an instance "
            "role); preflight needs read access to sts, ec2, service-quotas and eks")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or None
    cfg = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})

    def client(name: str) -> Any:
        return session.client(name, region_name=region, endpoint_url=endpoint, config=cfg)

    pricing = session.client("pricing", region_name=PRICE_API_REGION, endpoint_url=endpoint, config=cfg)
    return Clients(sts=client("sts"), ec2=client("ec2"), quotas=client("service-quotas"), eks=client("eks"),
                   pricing=pricing)


def _error_code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


# --------------------------------------------------------------------------- needs


def quota_bucket(instance_type: str) -> str:
    family = instance_type.split(".", 1)[0]
    if family.startswith(("g", "vt")):
        return "gvt"
    if family.startswith("p"):
        return "p"
    return "standard"


def system_vcpus(instance_type: str) -> int:
    """vCPUs of a general-purpose size from its name (large 2, xlarge 4, Nxlarge 4N)."""
    size = instance_type.split(".", 1)[1]
    if size == "large":
        return 2
    m = re.fullmatch(r"(\d*)xlarge", size)
    if not m:
        raise ValueError(f"cannot tell the vCPUs of {instance_type}")
    return 4 * int(m.group(1) or 1)


class QuotaNeed(Frozen):
    code: str
    name: str
    spot: bool
    vcpus: int
    parts: list[str]


def quota_needs(spec: DeploymentSpec, placements: list[Placement], catalog: Catalog | None = None) -> list[QuotaNeed]:
    """vCPUs per quota the stack needs at its maximum node counts.

    Capacity-block nodes are left out: they run in capacity the block already holds (U: AWS does not
    document whether they count against the On-Demand vCPU quota). ODCR, savings plans and reserved
    instances are on-demand instances for the quota.
    """
    cat = catalog or default_catalog()
    acc: dict[tuple[str, bool], tuple[int, list[str]]] = {}

    def add(bucket: str, spot: bool, vcpus: int, part: str) -> None:
        total, parts = acc.get((bucket, spot), (0, []))
        acc[(bucket, spot)] = (total + vcpus, [*parts, part])

    deps = {d.name: d for d in spec.models}
    for p in placements:
        dep = deps[p.name]
        inst = cat.instances[p.instance_type]
        option = dep.purchase.option
        if option is PurchaseOption.CAPACITY_BLOCK:
            continue
        bucket = quota_bucket(inst.type)
        if option is PurchaseOption.SPOT:
            od = on_demand_floor_nodes(p, dep)
            spot_nodes = p.max_nodes - od
            if od:
                add(bucket, False, od * inst.vcpu, f"{p.name}: {od} x {inst.type} ({inst.vcpu} vCPUs) on-demand floor")
            if spot_nodes:
                add(bucket, True, spot_nodes * inst.vcpu, f"{p.name}: {spot_nodes} x {inst.type} ({inst.vcpu} vCPUs)")
        else:
            add(bucket, False, p.max_nodes * inst.vcpu, f"{p.name}: {p.max_nodes} x {inst.type} ({inst.vcpu} vCPUs)")
    sys_type = spec.cluster.system_instance_type
    add(quota_bucket(sys_type), False, SYSTEM_NODES_MAX * system_vcpus(sys_type),
        f"system: up to {SYSTEM_NODES_MAX} x {sys_type} ({system_vcpus(sys_type)} vCPUs)")
    return [QuotaNeed(code=QUOTAS[k][0], name=QUOTAS[k][1], spot=k[1], vcpus=v, parts=parts)
            for k, (v, parts) in sorted(acc.items())]


# --------------------------------------------------------------------------- checks


def check_identity(sts: Any) -> tuple[Check, str]:
    """(check, account id); missing or rejected credentials are an environment problem (exit 3)."""
    try:
        ident = sts.get_caller_identity()
    except botocore.exceptions.NoCredentialsError:
        raise EnvironmentMissing("no AWS credentials found; preflight needs credentials for the stack's account") \
            from None
    except botocore.exceptions.ClientError as e:
        code = _error_code(e)
        if code in ("InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch", "AccessDenied",
                    "UnrecognizedClientException"):
            raise EnvironmentMissing(f"AWS rejected the credentials ({code}); refresh them and retry") from None
        raise
    except botocore.exceptions.EndpointConnectionError as e:
        raise EnvironmentMissing(f"cannot reach AWS STS ({e}); check the network or AWS_ENDPOINT_URL") from None
    return (Check(id="identity", subject=str(ident["Arn"]), status="pass",
                  message=f"account {ident['Account']} as {ident['Arn']}"), str(ident["Account"]))


def check_region(ec2: Any, region: str) -> Check:
    regions = ec2.describe_regions(AllRegions=True, RegionNames=[region])["Regions"]
    status = regions[0].get("OptInStatus", "opt-in-not-required") if regions else "unknown"
    if status in ("opt-in-not-required", "opted-in"):
        return Check(id="region", subject=region, status="pass", message=f"{region} is enabled ({status})")
    return Check(id="region", subject=region, status="fail",
                 message=f"region {region} is not enabled for this account ({status}); enable it in the account "
                         "settings or choose another aws:region")


def check_offerings(ec2: Any, spec: DeploymentSpec, placements: list[Placement]) -> list[Check]:
    zones = vpc_zones(spec.region, spec.network.az_count)
    deps = {d.name: d for d in spec.models}
    out: list[Check] = []
    for p in placements:
        dep = deps[p.name]
        resp = ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [p.instance_type]}, {"Name": "location", "Values": zones}])
        offered = sorted({o["Location"] for o in resp.get("InstanceTypeOfferings", [])})
        subject = f"{p.name} ({p.instance_type})"
        az = dep.purchase.availability_zone
        if az is not None and dep.purchase.option in (PurchaseOption.ODCR, PurchaseOption.CAPACITY_BLOCK):
            ok = az in offered
            out.append(Check(id="offerings", subject=subject, status="pass" if ok else "fail",
                             message=f"{p.instance_type} is {'' if ok else 'not '}offered in the reservation's AZ "
                                     f"{az} (offered in: {', '.join(offered) or 'none of ' + ', '.join(zones)})"))
            continue
        if not offered:
            out.append(Check(id="offerings", subject=subject, status="fail",
                             message=f"{p.instance_type} is not offered in any of the VPC's AZs ({', '.join(zones)}); "
                                     "raise network.azCount, pick another region, or pin another instanceType"))
        elif dep.spread_across_zones and p.nodes >= 2 and len(offered) < 2:
            out.append(Check(id="offerings", subject=subject, status="warn",
                             message=f"{p.instance_type} is offered only in {offered[0]} of {', '.join(zones)}: "
                                     f"the {p.nodes} nodes cannot spread across zones"))
        else:
            out.append(Check(id="offerings", subject=subject, status="pass",
                             message=f"offered in {', '.join(offered)}"))
    return out


def _quota_value(quotas: Any, code: str) -> tuple[float, str]:
    try:
        q = quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]
        return float(q["Value"]), "applied"
    except botocore.exceptions.ClientError as e:
        if _error_code(e) != "NoSuchResourceException":
            raise
    q = quotas.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]
    return float(q["Value"]), "AWS default"


def check_quotas(quotas: Any, spec: DeploymentSpec, placements: list[Placement],
                 catalog: Catalog | None = None) -> list[Check]:
    out: list[Check] = []
    for need in quota_needs(spec, placements, catalog):
        value, kind = _quota_value(quotas, need.code)
        subject = f"{need.name} ({need.code})"
        detail = "; ".join(need.parts)
        if value >= need.vcpus:
            out.append(Check(id="quota", subject=subject, status="pass",
                             message=f"quota {value:g} vCPUs ({kind}) >= {need.vcpus} needed ({detail}); instances "
                                     "already running in the account count against it too"))
        else:
            out.append(Check(
                id="quota", subject=subject, status="fail",
                message=f"vCPU quota {need.name} ({need.code}) in {spec.region} is {value:g} ({kind}), the stack needs "
                        f"{need.vcpus} ({detail}): request an increase to at least {need.vcpus} - `aws "
                        f"service-quotas request-service-quota-increase --service-code ec2 --quota-code {need.code} "
                        f"--desired-value {need.vcpus} --region {spec.region}`"))
    return out


def _as_date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    if isinstance(value, date):
        return value
    return None


def check_reservations(ec2: Any, spec: DeploymentSpec, placements: list[Placement], *, today: date,
                       window_days: int = DEFAULT_WINDOW_DAYS) -> list[Check]:
    """Each referenced ODCR / capacity block: exists, usable state, AZ, instance type, size, end date."""
    by_name = {p.name: p for p in placements}
    out: list[Check] = []
    for dep in spec.models:
        pur = dep.purchase
        if pur.option not in (PurchaseOption.ODCR, PurchaseOption.CAPACITY_BLOCK):
            continue
        p = by_name[dep.name]
        subject = f"{dep.name} ({pur.reservation_id or pur.reservation_resource_group_arn})"
        if pur.reservation_id is None:
            out.append(Check(id="reservation", subject=subject, status="warn",
                             message="reservations in a resource group are not checked one by one; make sure the "
                                     f"group holds {p.max_nodes} x {p.instance_type} in {pur.availability_zone}"))
            continue
        try:
            found = ec2.describe_capacity_reservations(CapacityReservationIds=[pur.reservation_id])
        except botocore.exceptions.ClientError as e:
            if _error_code(e).startswith("InvalidCapacityReservationId"):
                out.append(Check(id="reservation", subject=subject, status="fail",
                                 message=f"capacity reservation {pur.reservation_id} does not exist in {spec.region} "
                                         f"for this account ({_error_code(e)})"))
                continue
            raise
        items = found.get("CapacityReservations", [])
        if not items:
            out.append(Check(id="reservation", subject=subject, status="fail",
                             message=f"capacity reservation {pur.reservation_id} was not found in {spec.region}"))
            continue
        cr = items[0]
        problems: list[str] = []
        block = pur.option is PurchaseOption.CAPACITY_BLOCK
        states = USABLE_BLOCK_STATES if block else USABLE_RESERVATION_STATES
        if cr.get("State") not in states:
            problems.append(f"state is {cr.get('State')} (need {' or '.join(sorted(states))})")
        if block and cr.get("ReservationType") not in (None, "capacity-block"):
            problems.append(f"it is a {cr.get('ReservationType')} reservation, not a capacity block")
        if cr.get("AvailabilityZone") != pur.availability_zone:
            problems.append(f"it is in {cr.get('AvailabilityZone')}, the stack says {pur.availability_zone}")
        if cr.get("InstanceType") != p.instance_type:
            problems.append(f"it reserves {cr.get('InstanceType')}, the model is placed on {p.instance_type}")
        total = int(cr.get("TotalInstanceCount", 0))
        if total < p.max_nodes:
            problems.append(f"it holds {total} instances, the model needs up to {p.max_nodes}")
        end = _as_date(cr.get("EndDate"))
        window_end = pur.end_date if block and pur.end_date else today + timedelta(days=window_days)
        if end is not None and end < window_end:
            problems.append(f"it ends {end.isoformat()}, inside the stack's window (to {window_end.isoformat()})")
        if problems:
            out.append(Check(id="reservation", subject=subject, status="fail",
                             message=f"capacity reservation {pur.reservation_id}: " + "; ".join(problems)))
        else:
            out.append(Check(id="reservation", subject=subject, status="pass",
                             message=f"{cr.get('State')}, {total} x {cr.get('InstanceType')} in "
                                     f"{cr.get('AvailabilityZone')}" + (f", ends {end.isoformat()}" if end else
                                                                       ", no end date")))
    return out


def check_capacity_block_offerings(ec2: Any, spec: DeploymentSpec, placements: list[Placement], *, hours: int,
                                   catalog: Catalog | None = None) -> list[Check]:
    """Offerings for ``hours`` for every model placed on a Capacity-Block-eligible type."""
    cat = catalog or default_catalog()
    zones = set(vpc_zones(spec.region, spec.network.az_count))
    out: list[Check] = []
    for p in placements:
        if not cat.instances[p.instance_type].capacity_block:
            continue
        subject = f"{p.name} ({p.max_nodes} x {p.instance_type}, {hours} h)"
        offers = ec2.describe_capacity_block_offerings(
            InstanceType=p.instance_type, InstanceCount=p.max_nodes, CapacityDurationHours=hours,
        ).get("CapacityBlockOfferings", [])
        usable = [o for o in offers if o.get("AvailabilityZone") in zones]
        if not usable:
            elsewhere = sorted({str(o.get("AvailabilityZone")) for o in offers})
            out.append(Check(id="capacity-block-offerings", subject=subject, status="fail",
                             message=f"no capacity block of {p.max_nodes} x {p.instance_type} for {hours} h is offered "
                                     f"in the VPC's AZs ({', '.join(sorted(zones))})"
                                     + (f"; offered in {', '.join(elsewhere)}" if elsewhere else "")))
            continue
        best = min(usable, key=lambda o: float(o.get("UpfrontFee", "inf")))
        fee = float(best.get("UpfrontFee", "nan"))
        per_hour = fee / hours / p.max_nodes
        start = _as_date(best.get("StartDate"))
        out.append(Check(id="capacity-block-offerings", subject=subject, status="pass",
                         message=f"{len(usable)} offering(s); cheapest {best.get('CapacityBlockOfferingId')} in "
                                 f"{best.get('AvailabilityZone')} from {start}: ${fee:,.2f} upfront = "
                                 f"${per_hour:,.2f} per instance-hour"))
    return out


def check_eks_version(eks: Any, version: str) -> Check:
    resp = eks.describe_cluster_versions(clusterVersions=[version])
    found = [v for v in resp.get("clusterVersions", []) if v.get("clusterVersion") == version]
    if not found:
        return Check(id="eks-version", subject=version, status="fail",
                     message=f"EKS does not offer Kubernetes {version} in this region; set cluster.version to one "
                             "it lists (`aws eks describe-cluster-versions`)")
    v = found[0]
    status = str(v.get("versionStatus") or v.get("status") or "").upper().replace("-", "_")
    if status == "STANDARD_SUPPORT":
        return Check(id="eks-version", subject=version, status="pass",
                     message=f"Kubernetes {version} is in standard support"
                             + (f" until {_as_date(v.get('endOfStandardSupportDate'))}"
                                if v.get("endOfStandardSupportDate") else ""))
    if status == "EXTENDED_SUPPORT":
        return Check(id="eks-version", subject=version, status="warn",
                     message=f"Kubernetes {version} is in extended support: the control plane costs $0.60/h instead "
                             "of $0.10/h; upgrade cluster.version")
    return Check(id="eks-version", subject=version, status="fail",
                 message=f"Kubernetes {version} is {status.lower() or 'not supported'} in EKS; set a supported "
                         "cluster.version")


# --------------------------------------------------------------------------- the run


def run_preflight(
    spec: DeploymentSpec, placements: list[Placement], clients: Clients, *, block_hours: int | None = None,
    today: date | None = None, window_days: int = DEFAULT_WINDOW_DAYS, catalog: Catalog | None = None,
    progress: Callable[[str], None] | None = None, price_file: Path | None = None,
) -> PreflightReport:
    today = today or datetime.now(UTC).date()
    step = progress or (lambda _msg: None)
    step("identity")
    ident, account = check_identity(clients.sts)
    checks = [ident]
    step("region")
    region = check_region(clients.ec2, spec.region)
    checks.append(region)
    if region.status == "fail":
        return PreflightReport(stack=spec.stack, region=spec.region, account=account, checks=checks)
    step("instance type offerings")
    checks += check_offerings(clients.ec2, spec, placements)
    step("vCPU quotas")
    checks += check_quotas(clients.quotas, spec, placements, catalog)
    step("capacity reservations")
    checks += check_reservations(clients.capacity, spec, placements, today=today, window_days=window_days)
    if block_hours is not None:
        step("capacity block offerings")
        checks += check_capacity_block_offerings(clients.capacity, spec, placements, hours=block_hours,
                                                 catalog=catalog)
    step("EKS version")
    checks.append(check_eks_version(clients.eks, spec.cluster.version))
    if price_file is not None:
        step("live prices")
        checks += refresh_prices(clients.pricing, spec, placements, price_file, today=today, catalog=catalog)
    return PreflightReport(stack=spec.stack, region=spec.region, account=account, checks=checks)


def block_hours_for(days: int) -> int:
    """Capacity Block durations: 1-14 days, or a multiple of 7 days up to 182 (reference §1.5)."""
    if not (1 <= days <= 14 or (days % 7 == 0 and 7 <= days <= 182)):  # 0 and -7 are multiples of 7 too
        raise ValueError(f"{days} days is not a Capacity Block duration (1-14, or a multiple of 7 up to 182)")
    return days * 24



# --------------------------------------------------------------------------- live price refresh

PRICE_API_REGION = "us-east-1"  # the Price List query API is served from us-east-1 (and a few others)
PRICE_DRIFT_WARN = 0.05


def _on_demand_usd(product_json: str) -> float | None:
    """The hourly USD of an on-demand price-list product (one SKU, one term, one dimension)."""
    doc = json.loads(product_json)
    for term in doc.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") in ("Hrs", "Hours"):
                usd = float(dim.get("pricePerUnit", {}).get("USD", "nan"))
                if usd > 0:
                    return usd
    return None


def live_on_demand_prices(pricing: Any, region: str, instance_types: list[str]) -> dict[str, float]:
    """Linux, shared-tenancy, no-pre-installed-software on-demand $/h per instance type (Price List API)."""
    out: dict[str, float] = {}
    for itype in instance_types:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "MaxResults": 100,
                                      "Filters": [
                {"Type": "TERM_MATCH", "Field": "instanceType", "Value": itype},
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
                {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
                {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
                {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
                {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
            ]}
            if token:
                kwargs["NextToken"] = token
            resp = pricing.get_products(**kwargs)
            for product in resp.get("PriceList", []):
                usd = _on_demand_usd(product)
                if usd is not None:
                    out[itype] = min(usd, out.get(itype, usd))
            token = resp.get("NextToken")
            if not token:
                break
    return out


def refresh_prices(pricing: Any, spec: DeploymentSpec, placements: list[Placement], path: Path, *, today: date,
                   catalog: Catalog | None = None) -> list[Check]:
    """Write a dated price file for the stack's instance types and compare with what the kit assumes."""
    cat = catalog or default_catalog()
    types = sorted({p.instance_type for p in placements})
    live = live_on_demand_prices(pricing, spec.region, types)
    doc = {
        "source": {"url": "AWS Price List Query API, pricing:GetProducts (AmazonEC2, Linux, Shared, Used)",
                   "retrieved": today.isoformat(),
                   "note": "written by `servekit preflight --refresh-prices`; review, then update instances.yaml "
                           "or prices-aws.yaml (the kit reads prices only from those)"},
        "region": spec.region,
        "onDemandUsdPerHour": {t: live[t] for t in types if t in live},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out: list[Check] = []
    for t in types:
        inst = cat.instances[t]
        if t not in live:
            out.append(Check(id="prices", subject=t, status="warn",
                             message=f"the Price List API returned no on-demand Linux price for {t} in {spec.region}"))
            continue
        if inst.on_demand_usd_per_hour is None:
            out.append(Check(id="prices", subject=t, status="warn",
                             message=f"live on-demand ${live[t]:g}/h; the kit has no on-demand price for {t}"))
            continue
        kit = on_demand_rate(inst, spec.region).usd_per_hour
        drift = live[t] / kit - 1
        status: Status = "warn" if abs(drift) > PRICE_DRIFT_WARN else "pass"
        out.append(Check(id="prices", subject=t, status=status,
                         message=f"live ${live[t]:g}/h vs the kit's ${kit:g}/h ({drift:+.1%}); written to {path}"))
    return out
