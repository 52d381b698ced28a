"""Regions and availability zones the kit knows (data/regions.yaml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from servekit.errors import UserError

DATA_FILE = Path(__file__).parent / "data" / "regions.yaml"


@cache
def _regions() -> dict[str, list[str]]:
    data: dict[str, list[str]] = yaml.safe_load(DATA_FILE.read_text())["regions"]
    return data


def known_regions() -> list[str]:
    return sorted(_regions())


def availability_zones(region: str) -> list[str]:
    try:
        return list(_regions()[region])
    except KeyError:
        raise UserError("region not supported by servekit's catalog", path="aws:region", given=region,
                        allowed=", ".join(known_regions())) from None


def vpc_zones(region: str, az_count: int) -> list[str]:
    """The AZs a stack's VPC spans: the region's first ``az_count`` (network.azCount)."""
    return availability_zones(region)[:az_count]
