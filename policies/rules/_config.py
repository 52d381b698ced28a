"""Policy configuration: schema defaults, and the engine's way of resolving a ``--policy-pack-config`` file.

The engine (pulumi/pulumi ``pkg/resource/analyzer/config.go``, ``ReconcilePolicyPackConfig``) builds
each policy's effective configuration in this order:

1. the policy's default enforcement level and the ``default`` of every config-schema property;
2. ``"all": "<level>"`` from the config file sets every policy's enforcement level;
3. an entry named after a policy overrides its level (``"enforcementLevel"``) and its properties.

:func:`resolve` reproduces that, so the offline auditor reports exactly what ``pulumi preview`` would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, Policy, ResourceValidationArgs, StackValidationArgs

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"

Schema = Mapping[str, Mapping[str, Any]]


def settings(args: ResourceValidationArgs | StackValidationArgs, schema: Schema) -> dict[str, Any]:
    """The policy's config with schema defaults filled in (the engine does the same before calling us)."""
    merged: dict[str, Any] = {k: v["default"] for k, v in schema.items() if "default" in v}
    merged.update(dict(args.get_config()))
    return merged


@dataclass(frozen=True)
class Resolved:
    """One policy's effective enforcement level and configuration for a stack."""

    enforcement: EnforcementLevel
    config: dict[str, Any] = field(default_factory=dict)


def _level(value: Any, where: str) -> EnforcementLevel:
    try:
        return EnforcementLevel(value)
    except ValueError:
        allowed = ", ".join(level.value for level in EnforcementLevel)
        raise ValueError(f"{where}: {value!r} is not an enforcement level (allowed: {allowed})") from None


def resolve(
    policies: Sequence[Policy],
    pack_config: Mapping[str, Any],
    pack_default: EnforcementLevel = EnforcementLevel.ADVISORY,
) -> dict[str, Resolved]:
    """Effective level and config per policy name, as the engine computes them."""
    result: dict[str, Resolved] = {}
    for p in policies:
        schema = p.config_schema.properties if p.config_schema is not None else {}
        defaults = {k: v["default"] for k, v in schema.items() if "default" in v}
        result[p.name] = Resolved(p.enforcement_level or pack_default, defaults)
    if "all" in pack_config:
        everything = _level(pack_config["all"], "all")
        result = {name: Resolved(everything, r.config) for name, r in result.items()}
    for name, given in pack_config.items():
        if name == "all" or name not in result:
            continue
        current = result[name]
        if isinstance(given, str):
            result[name] = Resolved(_level(given, name), current.config)
            continue
        if not isinstance(given, Mapping):
            raise ValueError(f"{name}: expected an enforcement level or an object, got {given!r}")
        level = current.enforcement
        if "enforcementLevel" in given:
            level = _level(given["enforcementLevel"], f"{name}.enforcementLevel")
        props = {k: v for k, v in given.items() if k != "enforcementLevel"}
        result[name] = Resolved(level, {**current.config, **props})
    return result


def load_pack_config(stack: str, directory: Path = CONFIG_DIR) -> dict[str, Any]:
    """Read ``policies/config/<stack>.json`` (the file passed to ``--policy-pack-config``)."""
    path = directory / f"{stack}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object at the top level")
    return data
