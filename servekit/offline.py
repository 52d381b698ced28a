"""Run the real Pulumi program (``__main__.py``) in-process under recording mocks -> a :class:`Plan`.

No Pulumi CLI, no cloud: the stack file is read the way ``pulumi`` would hand it to the program
(project defaults from ``Pulumi.yaml`` under the stack's ``config:``), the program runs with
``preview=False`` so every input is a real value, and each resource registration is recorded with its
type token, name, parent, engine-named (camelCase) inputs and dependencies. Provider invokes (caller
identity, partition, region, availability zones, SSM AMI parameters, IAM policy documents) are answered
for the stack's region with a fixed fake account (123456789012, AWS's documentation account); resources
get plausible, deterministic outputs (ids, ARNs, the EKS endpoint and CA), so two runs of the same
stack give the same plan.

Secrets: values Pulumi marks secret reach the mocks wrapped in its secret signature; the plan
replaces each with ``"[secret]"``. The HF token is never read from the stack file: when the stack has
one, the program gets a placeholder secret instead, so the Kubernetes side still plans its Secret.

This uses two SDK internals (``run_pulumi_func`` and ``_sync_await``, as ``pulumi.runtime.test``
does) and the mock monitor's request fields; pulumi is pinned in pyproject and
``tests/test_offline.py`` fails if they move. Other components need nothing from here: whatever the
program registers (through ``components.platform`` extensions) is recorded. A component that calls an
invoke this module does not answer registers one with :func:`register_invoke`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import runpy
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import Mocks

from servekit.catalog import REPO_ROOT, read_yaml
from servekit.errors import UserError
from servekit.regions import availability_zones
from servekit.sizing import Placement
from servekit.stackfile import PROJECT, STACKS_DIR, read_stack_config

PROGRAM = REPO_ROOT / "__main__.py"
PROJECT_FILE = REPO_ROOT / "Pulumi.yaml"
FAKE_ACCOUNT_ID = "123456789012"
REDACTED = "[secret]"
HF_TOKEN_KEY = f"{PROJECT}:hfToken"
PLACEHOLDER_HF_TOKEN = "offline-placeholder-hf-token"  # stands in for the real secret; redacted like it
# Pulumi's wire marker for a secret value: {SIG_KEY: SECRET_SIG, "value": ...}.
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"

InvokeHandler = Callable[[Mapping[str, Any], str], dict[str, Any]]


class UnansweredInvoke(NotImplementedError):
    """The program called a data source the offline engine has no realistic answer for.

    Failing loudly beats answering ``{}``: Pulumi's mocks would hand the program empty values and
    the plan would silently describe something ``pulumi up`` never creates.
    """


_EXTRA_INVOKES: dict[str, InvokeHandler] = {}


def register_invoke(token: str, handler: InvokeHandler) -> None:
    """Answer ``token`` under the offline engine: ``handler(args, region) -> camelCase result``."""
    _EXTRA_INVOKES[token] = handler


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class PlanResource:
    type: str
    name: str
    urn: str
    id: str | None  # the mock's (deterministic) physical id; None for components
    parent: str | None  # the parent's URN (None for the stack itself)
    custom: bool
    inputs: dict[str, Any]  # engine (camelCase) names, secrets redacted
    dependencies: tuple[str, ...]  # URNs
    provider: str | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.type, "name": self.name, "urn": self.urn, "id": self.id,
                             "parent": self.parent, "custom": self.custom, "inputs": self.inputs,
                             "dependencies": list(self.dependencies)}
        if self.provider:
            d["provider"] = self.provider
        return d


@dataclass
class Plan:
    stack: str
    region: str
    resources: list[PlanResource]
    placements: list[Placement]
    warnings: list[str]
    outputs: dict[str, Any]
    node_pools: list[dict[str, Any]] = field(default_factory=list)

    def of_type(self, token: str) -> list[PlanResource]:
        return [r for r in self.resources if r.type == token]

    def children(self, urn: str) -> list[PlanResource]:
        return [r for r in self.resources if r.parent == urn]

    def descendants(self, urn: str) -> Iterator[PlanResource]:
        for c in self.children(urn):
            yield c
            yield from self.descendants(c.urn)

    def by_urn(self, urn: str) -> PlanResource:
        return next(r for r in self.resources if r.urn == urn)

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "region": self.region,
            "resources": [r.to_json() for r in self.resources],
            "placements": [{k: v for k, v in p.summary_json().items() if k != "rejected"} for p in self.placements],
            "nodePools": self.node_pools,
            "warnings": self.warnings,
            "outputs": self.outputs,
        }


def redact(value: Any) -> Any:
    """Replace every Pulumi-secret-wrapped value with ``"[secret]"``; make the rest JSON-friendly."""
    if isinstance(value, Mapping):
        if value.get(SIG_KEY) == SECRET_SIG:
            return REDACTED
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if value is None or isinstance(value, str | bool | int | float):
        return value
    return str(value)


# --------------------------------------------------------------------------- mocks


def _h(*parts: str, n: int = 17) -> str:
    return hashlib.sha256("::".join(parts).encode()).hexdigest()[:n]


_ID_PREFIX = {
    "aws:ec2/vpc:Vpc": "vpc-", "aws:ec2/subnet:Subnet": "subnet-", "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/routeTable:RouteTable": "rtb-", "aws:ec2/eip:Eip": "eipalloc-", "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-", "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "sg-", "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/flowLog:FlowLog": "fl-", "aws:ec2/routeTableAssociation:RouteTableAssociation": "rtbassoc-",
    "aws:ec2/route:Route": "r-rtb-",
}
_AUTO_NAMED = ("aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:eks/nodeGroup:NodeGroup",
               "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/securityGroup:SecurityGroup")
_NAME_KEY = {"aws:eks/nodeGroup:NodeGroup": "nodeGroupName"}


_DIRECTION = {"east": "e", "west": "w", "north": "n", "south": "s", "central": "c", "northeast": "ne",
              "southeast": "se", "northwest": "nw", "southwest": "sw"}


def _zone_id(region: str, zone: str) -> str:
    """AWS's zone-id form (us-east-1 -> use1-az1, ap-southeast-2 -> apse2-az1); the number is a placeholder."""
    area, *middle, number = region.split("-")
    short = area + "".join(_DIRECTION.get(m, m[:1]) for m in middle) + number
    return f"{short}-az{ord(zone[-1]) - ord('a') + 1}"


class RecordingMocks(Mocks):
    """Answers for resources and invokes; see the module docstring."""

    def __init__(self, region: str, account_id: str = FAKE_ACCOUNT_ID) -> None:
        self.region = region
        self.account_id = account_id

    # -- resources
    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        typ: str = args.typ
        name: str = args.name
        inputs: dict[str, Any] = dict(args.inputs)
        h = _h(typ, name)
        rid = _ID_PREFIX.get(typ, "") + h if typ in _ID_PREFIX else f"{name}-{h[:8]}"
        out: dict[str, Any] = {}
        if typ.startswith("pulumi:providers:"):
            return f"provider-{h[:12]}", {}
        if typ in _AUTO_NAMED:
            key = _NAME_KEY.get(typ, "name")
            if not inputs.get(key):
                out[key] = f"{name}-{h[:7]}"
        if typ.startswith("aws:"):
            out["arn"] = self._arn(typ, rid, {**inputs, **out})
            out["tagsAll"] = dict(inputs.get("tags") or {})
        if typ.startswith("kubernetes:"):
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", f"{name}-{h[:8]}")
            out["metadata"] = meta
        out.update(self._specific(typ, name, rid, h, inputs, out))
        return rid, out

    def _arn(self, typ: str, rid: str, props: Mapping[str, Any]) -> str:
        service = typ.split(":")[1].split("/")[0]
        acct, region = self.account_id, self.region
        if service == "iam":
            kind = typ.split("/")[1].split(":")[0]
            return f"arn:aws:iam::{acct}:{'role' if kind == 'role' else kind.lower()}/{props.get('name', rid)}"
        if service == "cloudwatch":
            return f"arn:aws:logs:{region}:{acct}:log-group:{props.get('name', rid)}"
        if typ == "aws:eks/cluster:Cluster":
            return f"arn:aws:eks:{region}:{acct}:cluster/{props.get('name', rid)}"
        if service == "kms":
            return f"arn:aws:kms:{region}:{acct}:key/{rid}"
        kind = typ.rsplit(":", 1)[-1].lower()
        return f"arn:aws:{service}:{region}:{acct}:{kind}/{rid}"

    def _specific(self, typ: str, name: str, rid: str, h: str, inputs: Mapping[str, Any],
                  out: Mapping[str, Any]) -> dict[str, Any]:
        region = self.region
        if typ == "aws:ec2/vpc:Vpc":
            return {"defaultSecurityGroupId": f"sg-{h[1:]}", "mainRouteTableId": f"rtb-{h[1:]}",
                    "defaultRouteTableId": f"rtb-{h[1:]}", "defaultNetworkAclId": f"acl-{h[1:]}",
                    "ownerId": self.account_id}
        if typ == "aws:ec2/subnet:Subnet":
            zone = inputs.get("availabilityZone", f"{region}a")
            return {"availabilityZoneId": _zone_id(region, zone), "ownerId": self.account_id}
        if typ in ("aws:ec2/eip:Eip", "aws:ec2/natGateway:NatGateway"):
            last = int(h[:4], 16) % 250 + 2
            extra: dict[str, Any] = {"publicIp": f"198.51.100.{last}"}
            if typ == "aws:ec2/eip:Eip":
                extra["allocationId"] = rid
            else:
                extra["privateIp"] = f"10.0.0.{last}"
            return extra
        if typ == "aws:kms/key:Key":
            return {"keyId": rid}
        if typ == "aws:iam/role:Role":
            return {"uniqueId": f"AROA{h.upper()[:17]}"}
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            return {"latestVersion": 1, "defaultVersion": 1}
        if typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
            dns = f"{rid}.{inputs.get('serviceName', '')}"
            return {"state": "available", "networkInterfaceIds": [f"eni-{h}"],
                    "dnsEntries": [{"dnsName": dns, "hostedZoneId": "Z7HUB22UULQXV"}]}
        if typ == "aws:eks/cluster:Cluster":
            ca = base64.b64encode(f"-----BEGIN CERTIFICATE-----\n{h}\n-----END CERTIFICATE-----\n".encode()).decode()
            vpc = dict(inputs.get("vpcConfig") or {})
            vpc.update({"clusterSecurityGroupId": f"sg-{_h(h, 'cluster')}", "vpcId": f"vpc-{_h(h, 'vpc')}"})
            return {"endpoint": f"https://{h.upper()}.gr7.{region}.eks.amazonaws.com",
                    "certificateAuthority": {"data": ca}, "status": "ACTIVE", "platformVersion": "eks.1",
                    "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{h.upper()}"}]}],
                    "vpcConfig": vpc, "clusterId": _h(h, "id", n=32)}
        if typ == "aws:eks/nodeGroup:NodeGroup":
            return {"status": "ACTIVE",
                    "resources": [{"autoscalingGroups": [{"name": f"eks-{out.get('nodeGroupName', name)}-{h[:8]}"}]}]}
        if typ == "aws:eks/accessEntry:AccessEntry":
            return {"accessEntryArn": f"arn:aws:eks:{region}:{self.account_id}:access-entry/{rid}"}
        if typ == "kubernetes:helm.sh/v3:Release":
            return {"name": inputs.get("name") or f"{name}-{h[:8]}",
                    "status": {"status": "deployed", "version": 1, "chart": inputs.get("chart", "")}}
        return {}

    # -- invokes
    def call(self, args: Any) -> dict[str, Any]:  # type: ignore[override]
        token: str = args.token
        a: Mapping[str, Any] = args.args or {}
        region, acct = self.region, self.account_id
        if token in _EXTRA_INVOKES:
            return _EXTRA_INVOKES[token](a, region)
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": acct, "arn": f"arn:aws:iam::{acct}:user/servekit-offline",
                    "userId": "AIDAOFFLINEEXAMPLE000", "id": acct}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "reverseDnsPrefix": "com.amazonaws",
                    "id": "aws"}
        if token == "aws:index/getRegion:getRegion":
            return {"name": region, "region": region, "endpoint": f"ec2.{region}.amazonaws.com",
                    "description": region, "id": region}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            zones = availability_zones(region)
            return {"names": zones, "zoneIds": [_zone_id(region, z) for z in zones], "groupNames": [region],
                    "state": a.get("state", "available"), "id": region}
        if token == "aws:ssm/getParameter:getParameter":
            name = str(a.get("name", ""))
            value = f"ami-{_h(region, name)}" if name.endswith("image_id") else f"offline-{_h(name, n=8)}"
            return {"name": name, "value": value, "insecureValue": value, "type": "String", "version": 1,
                    "arn": f"arn:aws:ssm:{region}::parameter{name}", "id": name}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            doc = policy_document(a)
            return {"json": doc, "minifiedJson": json.dumps(json.loads(doc), separators=(",", ":")), "id": _h(doc)}
        raise UnansweredInvoke(
            f"the offline engine has no answer for invoke {token}; register one with "
            "servekit.offline.register_invoke(token, handler)")


def policy_document(args: Mapping[str, Any]) -> str:
    """The JSON ``aws.iam.get_policy_document`` would return for ``args`` (camelCase wire names)."""
    statements = []
    for s in args.get("statements") or []:
        st: dict[str, Any] = {}
        if s.get("sid"):
            st["Sid"] = s["sid"]
        st["Effect"] = s.get("effect", "Allow")
        for key, out_key in (("principals", "Principal"), ("notPrincipals", "NotPrincipal")):
            if s.get(key):
                principal: dict[str, Any] = {}
                for p in s[key]:
                    ids = p.get("identifiers", [])
                    principal[p["type"]] = ids[0] if len(ids) == 1 else sorted(ids)
                st[out_key] = principal
        for key, out_key in (("actions", "Action"), ("notActions", "NotAction"), ("resources", "Resource"),
                             ("notResources", "NotResource")):
            if s.get(key):
                vals = s[key]
                st[out_key] = vals[0] if len(vals) == 1 else list(vals)
        if s.get("conditions"):
            cond: dict[str, dict[str, Any]] = {}
            for c in s["conditions"]:
                vals = c.get("values", [])
                cond.setdefault(c["test"], {})[c["variable"]] = vals[0] if len(vals) == 1 else list(vals)
            st["Condition"] = cond
        statements.append(st)
    return json.dumps({"Version": args.get("version") or "2012-10-17", "Statement": statements}, indent=2)


# --------------------------------------------------------------------------- running the program


class _Recorder:
    def __init__(self, records: list[dict[str, Any]] | None = None) -> None:
        self.lock = threading.Lock()
        self.records: list[dict[str, Any]] = records if records is not None else []


def _monitor(mocks: RecordingMocks, recorder: _Recorder) -> Any:
    from pulumi.runtime.mocks import MockMonitor

    class RecordingMonitor(MockMonitor):
        def RegisterResource(self, request: Any) -> Any:  # the gRPC method's name
            from pulumi.runtime import rpc

            response = super().RegisterResource(request)
            inputs = rpc.deserialize_properties(request.object) if request.type != "pulumi:pulumi:Stack" else {}
            with recorder.lock:
                recorder.records.append({
                    "type": request.type, "name": request.name, "urn": response.urn, "id": response.id or None,
                    "parent": request.parent or None, "custom": bool(request.custom),
                    "inputs": redact(inputs), "dependencies": tuple(sorted(set(request.dependencies))),
                    "provider": request.provider or None,
                })
            return response

    return RecordingMonitor(mocks)


class _WarningCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def project_defaults(path: Path = PROJECT_FILE) -> dict[str, Any]:
    """Config values ``Pulumi.yaml`` gives every stack that does not set them (as the CLI applies them)."""
    raw = read_yaml(path)
    config = raw.get("config") if isinstance(raw, dict) else None
    out: dict[str, Any] = {}
    for key, decl in (config or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(decl, dict):
            if "default" in decl:
                out[full] = decl["default"]
            elif "value" in decl:
                out[full] = decl["value"]
        else:
            out[full] = decl
    return out


def _encode(value: Any) -> str:
    """A config value as the engine passes it: strings as they are, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _order(records: list[dict[str, Any]]) -> list[PlanResource]:
    """Parents before children, siblings by URN: registration order varies between runs, this does not."""
    by_parent: dict[str | None, list[dict[str, Any]]] = {}
    for r in records:
        by_parent.setdefault(r["parent"], []).append(r)
    out: list[PlanResource] = []

    def walk(parent: str | None) -> None:
        for r in sorted(by_parent.get(parent, []), key=lambda x: x["urn"]):
            out.append(PlanResource(**r))
            walk(r["urn"])

    walk(None)
    seen = {r.urn for r in out}
    out.extend(PlanResource(**r) for r in sorted(records, key=lambda x: x["urn"]) if r["urn"] not in seen)
    return out


_RUN_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_provider_sdks() -> Iterator[None]:
    """Hide the DeprecationWarnings pulumi_aws modules raise when they load (lazily, on first use) for
    resources the kit does not use (e.g. ``EncryptionControl``), so plans print no third-party noise."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pulumi_aws(\..*)?$")
        yield


def run_program(
    config: Mapping[str, Any], stack: str, *, secret_keys: tuple[str, ...] = (), program: Path = PROGRAM,
    display_file: str | None = None, records: list[dict[str, Any]] | None = None,
) -> Plan:
    """Run ``program`` under the recording mocks with ``config`` (``ns:key`` -> parsed value).

    Re-runnable: the root stack resource, settings and event loop are fresh for every run. ``records``
    (optional) receives each registration as it happens, also when the program then fails.
    """
    from pulumi.runtime import settings
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    region = str(config.get("aws:region") or "us-east-1")
    mocks = RecordingMocks(region)
    recorder = _Recorder(records)
    collector = _WarningCollector()
    logger = logging.getLogger(f"servekit.offline.{stack}")
    logger.propagate = False
    logger.handlers = [collector]
    logger.setLevel(logging.WARNING)
    globals_: dict[str, Any] = {}

    def program_main() -> None:
        globals_.update(runpy.run_path(str(program), run_name="__main__"))

    with _RUN_LOCK:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            settings.ROOT.set(None)
            pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, logger=logger,
                                     monitor=_monitor(mocks, recorder))
            pulumi.runtime.set_all_config({k: _encode(v) for k, v in config.items()}, secret_keys=list(secret_keys))
            try:
                with _quiet_provider_sdks():
                    _sync_await(run_pulumi_func(program_main))
            except pulumi.RunError as e:
                cause = e.__cause__
                if isinstance(cause, UserError):
                    file = display_file if cause.file and display_file else cause.file
                    raise UserError(cause.message, file=file, path=cause.path, given=cause.given,
                                    allowed=cause.allowed) from None
                raise
            outputs = _resolve_outputs(settings.get_root_resource(), _sync_await)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)
            settings.ROOT.set(None)
            pulumi.runtime.set_all_config({}, secret_keys=[])

    platform_plan = globals_.get("plan")
    pools = [{"name": p.name, "gpuType": p.gpu_type, "instanceTypes": list(p.instance_types),
              "capacityType": p.capacity_type, "purchase": p.option.value, "zones": list(p.zones),
              "desiredNodes": p.desired_nodes, "minNodes": p.min_nodes, "maxNodes": p.max_nodes,
              "volumeGib": p.volume_gib, "models": list(p.models), "monthlyUsd": round(p.monthly_usd, 2)}
             for p in getattr(platform_plan, "pools", ())]
    # Components log from concurrent callbacks: sort so that the same stack always gives the same plan.
    return Plan(stack=stack, region=region, resources=_order(recorder.records),
                placements=list(globals_.get("placements", [])), warnings=sorted(set(collector.messages)),
                outputs=outputs,
                node_pools=pools)


def _resolve_outputs(root: Any, sync_await: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted((getattr(root, "outputs", None) or {}).items()):
        o = pulumi.Output.from_input(value)
        out[name] = REDACTED if sync_await(o.is_secret()) else redact(sync_await(o.future()))
    return out


def stack_config(stack: str, stacks_dir: Path = STACKS_DIR) -> tuple[Path, dict[str, Any], list[str]]:
    """The stack file's config with project defaults applied; the HF token replaced by a placeholder.

    Returns (path, config, notes).
    """
    path, raw = read_stack_config(stack, stacks_dir)
    config = {**project_defaults(), **raw}
    notes: list[str] = []
    if HF_TOKEN_KEY in config:
        given = config[HF_TOKEN_KEY]
        if not (isinstance(given, Mapping) and "secure" in given):
            notes.append(f"{HF_TOKEN_KEY} is stored in plain text in {path.name}; "
                         f"use `pulumi config set --secret {HF_TOKEN_KEY} <token>`")
        config[HF_TOKEN_KEY] = PLACEHOLDER_HF_TOKEN
    return path, config, notes


def plan_stack(stack: str, stacks_dir: Path = STACKS_DIR, *, program: Path = PROGRAM) -> Plan:
    """Read ``<stacks_dir>/Pulumi.<stack>.yaml`` and run the program offline. UserError on bad input."""
    path, config, notes = stack_config(stack, stacks_dir)
    display = _display(path)
    plan = run_program(config, stack, secret_keys=(HF_TOKEN_KEY,), program=program, display_file=display)
    plan.warnings[:0] = notes
    return plan


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
