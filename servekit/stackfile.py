"""Stack files: ``stacks/Pulumi.<stack>.yaml`` -> DeploymentSpec -> placements.

Every user error stops here, before any resource exists: unknown keys, bad values, unknown
models, GPUs a model cannot fit. ``__main__.py`` (under ``pulumi up``) and the offline commands
share ``spec_from_config`` so both read a stack file the same way.

Config keys are ``servekit:<field>`` for each DeploymentSpec field (camelCase) plus
``aws:region``; ``servekit:hfToken`` is a Pulumi secret and never enters the spec.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from servekit.catalog import REPO_ROOT, Catalog, default_catalog, read_yaml
from servekit.cost import check_purchase
from servekit.engine_args import engine_args
from servekit.errors import UserError, from_validation_error
from servekit.regions import availability_zones, vpc_zones
from servekit.sizing import NoPlacement, Placement, place
from servekit.spec import DeploymentSpec

STACKS_DIR = REPO_ROOT / "stacks"
PROJECT = "servekit"
SECRET_KEYS = frozenset({"hfToken"})
# Spec fields that are not servekit:* keys: the stack name comes from the file name, the region is aws:region.
NOT_CONFIG_KEYS = frozenset({"stack", "region"})


@cache
def aws_provider_keys() -> frozenset[str]:
    """The aws:* config keys the pinned pulumi-aws provider reads, from its own config module.

    Read as text: importing ``pulumi_aws.config.vars`` on its own is a circular import, and the
    generated file is the contract (every key is a ``__config__.get*('<key>')`` call).
    """
    spec = importlib.util.find_spec("pulumi_aws")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "config" / "vars.py").read_text(encoding="utf-8")
    return frozenset(re.findall(r"__config__\.get[a-z_]*\('([A-Za-z0-9]+)'\)", source))


def stack_path(stack: str, stacks_dir: Path = STACKS_DIR) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def available_stacks(stacks_dir: Path = STACKS_DIR) -> list[str]:
    return sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in stacks_dir.glob("Pulumi.*.yaml"))


def _field_aliases() -> dict[str, str]:
    return {(f.alias or name): name for name, f in DeploymentSpec.model_fields.items()}


def spec_from_config(config: Mapping[str, Any], stack: str, *, file: str | Path) -> DeploymentSpec:
    """Build the spec from ``project:key`` -> value config (values already parsed from YAML/JSON)."""
    aliases = _field_aliases()
    data: dict[str, Any] = {"stack": stack}
    for key, value in config.items():
        ns, _, name = key.partition(":")
        if ns == PROJECT:
            if name in SECRET_KEYS:
                continue
            if name not in aliases or name in NOT_CONFIG_KEYS:
                allowed = sorted(set(aliases) - NOT_CONFIG_KEYS | SECRET_KEYS)
                raise UserError("unknown config key (a typo?)", file=file, path=f"config.{key}",
                                allowed=", ".join(f"{PROJECT}:{a}" for a in allowed))
            data[name] = value
        elif key == "aws:region":
            data["region"] = value
        elif ns == "aws":
            if name not in aws_provider_keys():
                raise UserError("unknown aws provider config key (a typo?)", file=file, path=f"config.{key}",
                                allowed=", ".join(f"aws:{k}" for k in sorted(aws_provider_keys())))
        else:
            raise UserError("unknown config namespace", file=file, path=f"config.{key}",
                            allowed=f"{PROJECT}:*, aws:*")
    try:
        spec = DeploymentSpec.model_validate(data)
    except ValidationError as e:
        err = from_validation_error(e, file=file, model=DeploymentSpec)
        # Report paths as the user wrote them: config.servekit:models[0].sla...
        if err.path:
            head, dot, rest = err.path.partition(".")
            bracket = head.find("[")
            base, index = (head[:bracket], head[bracket:]) if bracket >= 0 else (head, "")
            key = "aws:region" if base == "region" else f"{PROJECT}:{base}"
            err = UserError(err.message, file=file, path=f"config.{key}{index}{dot}{rest}", given=err.given,
                            allowed=err.allowed)
        raise err from None
    try:
        availability_zones(spec.region)
    except UserError as e:
        raise UserError(e.message, file=file, path="config.aws:region", given=e.given, allowed=e.allowed) from None
    return spec


def read_stack_config(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[Path, dict[str, Any]]:
    path = stack_path(stack, stacks_dir)
    if not path.exists():
        raise UserError("no such stack", file=path, given=stack,
                        allowed=", ".join(available_stacks(stacks_dir)) or "(no stack files)")
    raw = read_yaml(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        raise UserError("a stack file needs a top-level 'config:' mapping", file=path)
    extra = sorted(set(raw) - {"config", "encryptionsalt", "secretsprovider", "encryptedkey"})
    if extra:
        raise UserError("unknown top-level key", file=path, path=extra[0], allowed="config, encryptionsalt")
    return path, raw["config"]


def load_stack(stack: str, stacks_dir: Path = STACKS_DIR) -> DeploymentSpec:
    path, config = read_stack_config(stack, stacks_dir)
    return spec_from_config(config, stack, file=_display(path))


@dataclass(frozen=True)
class ResolvedStack:
    spec: DeploymentSpec
    placements: list[Placement]
    file: str


def place_all(spec: DeploymentSpec, catalog: Catalog, *, file: str | Path) -> list[Placement]:
    """Place every model; in a stack a model that cannot be placed is an input error (exit 2)."""
    out = []
    for i, dep in enumerate(spec.models):
        where = f"config.{PROJECT}:models[{i}]."
        if dep.model not in catalog.models:  # the catalog's own error has no path: name the model key
            raise UserError("unknown model", file=file, path=f"{where}model", given=dep.model,
                            allowed=", ".join(sorted(catalog.models)))
        try:
            placement = place(dep, catalog, where=where)
            # Build the vLLM flags now so a flag the pinned vLLM rejects stops the stack load.
            engine_args(placement, dep, catalog.model(dep.model), origin=f"{file}: {where}")
            out.append(placement)
        except UserError as e:
            raise UserError(e.message, file=file, path=e.path, given=e.given, allowed=e.allowed) from None
        except NoPlacement as e:
            reasons = sorted({c.reason for c in e.candidates})
            best = reasons[0] if len(reasons) == 1 else "; ".join(reasons[:3]) + (
                f" (+{len(reasons) - 3} more; run `servekit size {dep.model}` for every candidate)"
                if len(reasons) > 3 else "")
            raise UserError(f"no instance type can serve {dep.name} ({dep.model}): {best}", file=file,
                            path=f"{where}sla" if dep.instance_type or dep.gpus else f"{where}model") from None
    _check_reservations(spec, out, file)
    check_purchase(spec, out, file)
    return out


def _check_reservations(spec: DeploymentSpec, placements: list[Placement], file: str | Path) -> None:
    """A reservation's AZ must be one the VPC spans (the first az_count AZs of the region)."""
    zones = vpc_zones(spec.region, spec.network.az_count)
    for i, dep in enumerate(spec.models):
        az = dep.purchase.availability_zone
        if az is not None and az not in zones:
            raise UserError("the reservation's AZ is not one the VPC spans", file=file,
                            path=f"config.{PROJECT}:models[{i}].purchase.availabilityZone", given=az,
                            allowed=", ".join(zones))


def resolve_stack(stack: str, catalog: Catalog | None = None, stacks_dir: Path = STACKS_DIR) -> ResolvedStack:
    path, config = read_stack_config(stack, stacks_dir)
    file = _display(path)
    spec = spec_from_config(config, stack, file=file)
    return ResolvedStack(spec=spec, placements=place_all(spec, catalog or default_catalog(), file=file), file=file)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
