"""The Pulumi program: stack config -> DeploymentSpec -> placements -> components.Platform.

This is the only place that reads ``pulumi.Config``. Every ``servekit:*`` key present (and the
``aws:*`` keys) goes through ``servekit.stackfile.spec_from_config`` and ``place_all``, the same
functions the offline commands use, so a stack file fails the same way under ``pulumi up`` and under
``servekit plan``. A user error becomes ``pulumi.RunError``: Pulumi prints its one-line message (file,
dotted path, what was given, what is allowed) without a Python traceback, and nothing is created.
The original ``UserError`` rides along as ``__cause__`` for the offline engine (exit code 2).

``servekit:hfToken`` is read only as a secret and handed to the platform for the Kubernetes side; it
is never logged or exported.
"""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi.runtime

from components.platform import Platform, PlatformArgs, plan_platform
from servekit.catalog import default_catalog
from servekit.engine_args import VLLM_PORT
from servekit.errors import UserError
from servekit.stackfile import PROJECT, SECRET_KEYS, place_all, spec_from_config

HF_TOKEN_KEY = "hfToken"


def _config_keys() -> list[str]:
    """Every config key the engine handed this program (explicitly set, or via PULUMI_CONFIG)."""
    keys = set(pulumi.runtime.config.CONFIG.get()) | set(pulumi.runtime.get_config_env())
    return sorted(keys)


def _value(raw: str) -> Any:
    """Config values arrive as strings; objects, lists, numbers and booleans as JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def read_config() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _config_keys():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT and name in SECRET_KEYS:
            continue  # secrets never enter the spec
        raw = pulumi.Config(namespace).get(name)
        if raw is not None:
            out[key] = _value(raw)
    return out


stack = pulumi.get_stack()
stack_file = f"stacks/Pulumi.{stack}.yaml"
try:
    spec = spec_from_config(read_config(), stack, file=stack_file)
    placements = place_all(spec, default_catalog(), file=stack_file)
    plan = plan_platform(spec, placements, file=stack_file)
except UserError as e:
    raise pulumi.RunError(str(e)) from e

for warning in plan.warnings:
    pulumi.log.warn(warning)

hf_token = pulumi.Config(PROJECT).get_secret(HF_TOKEN_KEY)
platform = Platform("servekit", PlatformArgs(spec=spec, placements=placements, plan=plan, hf_token=hf_token))

sla = {m.name: m.sla for m in spec.models}
pulumi.export("region", spec.region)
pulumi.export("clusterName", platform.cluster.name)
pulumi.export("clusterEndpoint", platform.cluster.endpoint)
pulumi.export("kubeconfig", pulumi.Output.secret(platform.cluster.kubeconfig))
pulumi.export("vpcId", platform.network.vpc_id)
pulumi.export("nodeGroups", {n: g.node_group_name for n, g in platform.gpu_nodes.node_groups.items()})
# Where each model will answer; the Kubernetes side's extension replaces this with its real Services.
pulumi.export("models", platform.outputs.get("models", {
    p.name: {
        "namespace": p.name,
        "service": p.name,
        "port": VLLM_PORT,
        "endpoint": f"http://{p.name}.{p.name}.svc.cluster.local:{VLLM_PORT}/v1",
        "servedModelName": p.name,
        "nodePools": [pool.name for pool in plan.pools_for(p.name)],
        "slaP95Seconds": sla[p.name].p95_e2e_seconds,
        "slaConcurrencyPerReplica": sla[p.name].concurrency_per_replica,
    }
    for p in placements
}))
pulumi.export("placements", [
    {**{k: v for k, v in p.to_json().items() if k not in ("rejected", "memory", "explanation")},
     "slaP95Seconds": sla[p.name].p95_e2e_seconds}
    for p in placements
])
for key, value in platform.outputs.items():
    if key != "models":
        pulumi.export(key, value)
