"""Where EC2 offers an instance type, and how many pod IPs a node of it holds (plan-time checks).

The facts come from ``data/ec2-offerings.json``, a snapshot generated from the EC2 data moto ships
(``scripts/gen_ec2_offerings.py``; a test keeps it equal to moto's). A stack that asks for an
instance type where EC2 does not sell it fails at plan time with the zones where it *is* offered;
``servekit preflight`` repeats the check against the real account.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from servekit.errors import UserError

DATA_FILE = Path(__file__).parent / "data" / "ec2-offerings.json"
MIN_ZONES = 2  # an instance type must be offered in at least this many AZs of the region (unless reserved)


@dataclass(frozen=True)
class InstanceNetwork:
    max_interfaces: int  # ENIs on the default network card
    ipv4_per_interface: int

    @property
    def max_pods(self) -> int:
        """EKS's max-pods formula for the VPC CNI without prefix delegation."""
        return self.max_interfaces * (self.ipv4_per_interface - 1) + 2


@dataclass(frozen=True)
class Snapshot:
    networks: dict[str, InstanceNetwork]
    offerings: dict[str, dict[str, list[str]]]  # region -> instance type -> zone names
    source: dict[str, Any]


@cache
def snapshot(path: Path = DATA_FILE) -> Snapshot:
    raw = json.loads(path.read_text())
    return Snapshot(
        networks={t: InstanceNetwork(v["maximumNetworkInterfaces"], v["ipv4AddressesPerInterface"])
                  for t, v in raw["instanceTypes"].items()},
        offerings=raw["offerings"],
        source=raw["source"],
    )


def network(instance_type: str, *, where: str | None = None, file: str | None = None) -> InstanceNetwork:
    snap = snapshot()
    try:
        return snap.networks[instance_type]
    except KeyError:
        raise UserError("instance type unknown to servekit's EC2 snapshot (data/ec2-offerings.json)",
                        file=file, path=where, given=instance_type,
                        allowed=", ".join(sorted(snap.networks))) from None


def offered_zones(instance_type: str, region: str) -> list[str]:
    """Zone names of ``region`` where EC2 offers ``instance_type`` (empty when nowhere)."""
    return list(snapshot().offerings.get(region, {}).get(instance_type, []))


def _where_offered(instance_type: str, region: str) -> str:
    zones = offered_zones(instance_type, region)
    elsewhere = sorted(r for r, types in snapshot().offerings.items() if r != region and types.get(instance_type))
    text = f"{instance_type} is offered in {', '.join(zones) if zones else 'no AZ'} of {region}"
    if elsewhere:
        text += f"; regions offering it: {', '.join(elsewhere)}"
    return text


def usable_zones(
    instance_type: str,
    region: str,
    vpc_zones: Sequence[str],
    *,
    reservation_zone: str | None = None,
    where: str | None = None,
    file: str | None = None,
) -> list[str]:
    """The VPC zones a node group of ``instance_type`` may use; a UserError when there are none.

    With a reservation (ODCR or capacity block) the type must be offered in the reservation's zone,
    which becomes the only zone. Otherwise EC2 must offer it in at least two zones of the region and in
    at least one zone the VPC spans (the node group uses only those).
    """
    network(instance_type, where=where, file=file)
    zones = offered_zones(instance_type, region)
    if reservation_zone is not None:
        if reservation_zone not in zones:
            raise UserError(f"{instance_type} is not offered in the reservation's AZ", file=file, path=where,
                            given=reservation_zone, allowed=_where_offered(instance_type, region))
        return [reservation_zone]
    if len(zones) < MIN_ZONES:
        raise UserError(f"{instance_type} must be offered in at least {MIN_ZONES} AZs of {region} for a "
                        "node group that survives an AZ outage", file=file, path=where, given=instance_type,
                        allowed=_where_offered(instance_type, region))
    inside = [z for z in vpc_zones if z in zones]
    if not inside:
        raise UserError(f"{instance_type} is not offered in any AZ the VPC spans ({', '.join(vpc_zones)})",
                        file=file, path=where, given=instance_type,
                        allowed=_where_offered(instance_type, region) + "; raise network.azCount to reach them")
    return inside
