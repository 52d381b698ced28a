"""Generate servekit/data/ec2-offerings.json from the EC2 data moto ships.

moto bundles EC2's DescribeInstanceTypeOfferings (per AZ) and DescribeInstanceTypes answers; the
kit needs a small part of them at plan time (where an instance type is offered, how many pod IPs a
node can hold) without making moto a runtime dependency. Run after a moto upgrade:

    .venv/bin/python scripts/gen_ec2_offerings.py            # rewrite the snapshot
    .venv/bin/python scripts/gen_ec2_offerings.py --check    # exit 1 if the snapshot is stale

tests/test_aws_contracts.py regenerates the snapshot in memory and compares it with the file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

from servekit.catalog import default_catalog
from servekit.regions import known_regions

OUT = Path(__file__).resolve().parent.parent / "servekit" / "data" / "ec2-offerings.json"

# General-purpose types a stack may pick for its CPU system node group (cluster.systemInstanceType).
SYSTEM_FAMILIES = ("m5", "m6i", "m6a", "m7i", "m7a", "c6i", "c7i", "r6i", "r7i")
SYSTEM_SIZES = ("large", "xlarge", "2xlarge", "4xlarge")
EXTRA_TYPES = ("t3.medium", "t3.large")


def _moto_resources() -> Path:
    import moto  # a test dependency; only this generator and the tests import it

    return Path(moto.__file__).resolve().parent / "ec2" / "resources"


def _load(path: Path) -> Any:
    if path.suffix != ".gz":
        return json.loads(path.read_text())
    with gzip.open(path) as f:
        return json.loads(f.read())


def instance_types_of_interest() -> list[str]:
    types = set(default_catalog().instances)
    types.update(f"{f}.{s}" for f in SYSTEM_FAMILIES for s in SYSTEM_SIZES)
    types.update(EXTRA_TYPES)
    return sorted(types)


def build() -> dict[str, Any]:
    import moto

    res = _moto_resources()
    described: dict[str, Any] = _load(res / "instance_types.json.gz")
    wanted = [t for t in instance_types_of_interest() if t in described]
    networks: dict[str, dict[str, int]] = {}
    for t in wanted:
        info = described[t]["NetworkInfo"]
        card = info.get("DefaultNetworkCardIndex", 0)
        cards = {c["NetworkCardIndex"]: c for c in info.get("NetworkCards", [])}
        enis = cards[card]["MaximumNetworkInterfaces"] if card in cards else info["MaximumNetworkInterfaces"]
        networks[t] = {"maximumNetworkInterfaces": enis, "ipv4AddressesPerInterface": info["Ipv4AddressesPerInterface"]}
    offerings: dict[str, dict[str, list[str]]] = {}
    for region in known_regions():
        path = res / "instance_type_offerings" / "availability-zone" / f"{region}.json.gz"
        rows = _load(path) if path.exists() else _load(path.with_suffix(""))
        by_type: dict[str, list[str]] = {}
        for row in rows:
            if row["InstanceType"] in networks:
                by_type.setdefault(row["InstanceType"], []).append(row["Location"])
        offerings[region] = {t: sorted(zs) for t, zs in sorted(by_type.items())}
    return {
        "source": {
            "generator": "scripts/gen_ec2_offerings.py",
            "data": f"moto {moto.__version__}: ec2/resources/instance_types.json.gz and "
                    "instance_type_offerings/availability-zone/<region>.json.gz (EC2 DescribeInstanceTypes / "
                    "DescribeInstanceTypeOfferings as moto captured them)",
            "note": "maximumNetworkInterfaces is the default network card's; EKS max pods = ENIs x (IPv4 per ENI "
                    "- 1) + 2. Offerings differ per account only in the zone-name mapping; preflight checks live.",
        },
        "missing": sorted(set(instance_types_of_interest()) - set(networks)),
        "instanceTypes": networks,
        "offerings": offerings,
    }


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the snapshot differs from moto's data")
    args = ap.parse_args()
    text = render(build())
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} is stale; rerun without --check")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
