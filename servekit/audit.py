"""Offline policy audit: run the CrossGuard pack in ``policies/`` against an offline :class:`~servekit.offline.Plan`.

``pulumi preview --policy-pack policies`` hands every resource registration to the pack's ``Analyze``
and, at the end, the whole stack to ``AnalyzeStack``. This module rebuilds exactly those arguments
from the plan that :mod:`servekit.offline` records and runs the same policy objects
(``policies.rules.ALL_POLICIES``) the way pulumi-policy 1.21's analyzer does:

* **URNs** are the engine's (``urn:pulumi:<stack>::<project>::<parent type chain>$<type>::<name>``,
  the root stack's type left out of the chain), not the mock monitor's (which names only the
  immediate parent's type). Dependencies, parents and provider references are translated too.
* **Props**: a resource policy sees the resource's engine-named inputs; a stack policy sees its
  state, i.e. the inputs overlaid with the outputs the offline mocks returned (ARNs, auto-names,
  ``tagsAll``, ...) plus the physical ``id``. The plan has no property dependencies, so the id is
  what lets stack policies match a node group's ``subnetIds`` to its subnets by value. Every value
  crosses a ``google.protobuf.Struct`` as on the wire (numbers become floats) and is wrapped in
  pulumi-policy's ``unknown_checking_proxy``.
* **Providers**: a resource with an explicit provider (the cluster's Kubernetes provider) gets that
  provider's inputs; any other custom resource gets its package's *default provider*
  (``pulumi:providers:aws::default_<version>``) whose inputs are the stack's ``aws:*`` config plus
  ``version``, as the engine builds them. Default providers are resources of the stack too.
* **Config**: ``policies/config/<stack>.json`` resolved with ``policies.rules.resolve`` (the engine's
  reconciliation), sent through a ``Struct`` as ``Configure`` receives it. Disabled policies do not
  run; ``remediate`` is reported as mandatory, as the analyzer does.
* **Outcomes**: a violation; ``args.not_applicable(reason)``; or an ``UnknownValueError``, which the
  engine turns into an advisory "can't run policy ... during preview" note (the offline plan is
  fully known, so this only happens to a hand-made plan). Async validators run on a fresh event
  loop, as the analyzer runs them.

What the plan cannot tell (so the args say the engine's defaults): resource options other than the
parent (``protect``, ``ignoreChanges``, aliases, custom timeouts), property dependencies, the
provider's ``Check`` rewrites of inputs (auto-names, ``__defaults``) and stack tags beyond the
project's own (``pulumi:project``, ``pulumi:runtime``, ``pulumi:description``).

The budget has one home per stack in the policy config (the real engine reads nothing else); when a
config leaves ``monthly-budget.budgetMonthlyUsd`` out, the audit takes the stack file's
``servekit:budgetMonthlyUsd``, and it warns when both are set and differ (see docs/compliance.md).

``policies`` is a pack directory, not an installed package: :func:`_pack_importable` puts the
repository root on ``sys.path`` (once, here) so ``policies.rules`` imports from any working directory.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib.metadata
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UnknownValueError, _DictProxy, unknown_checking_proxy

from servekit.catalog import REPO_ROOT, read_yaml
from servekit.errors import UserError

PACK_DIR = REPO_ROOT / "policies"
CONFIG_DIR = PACK_DIR / "config"
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
PROVIDER_PREFIX = "pulumi:providers:"
BUDGET_POLICY = "monthly-budget"
BUDGET_KEY = "budgetMonthlyUsd"
STACK_BUDGET_KEY = "servekit:budgetMonthlyUsd"

SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "": 4}


def _pack_importable() -> None:
    """Make ``policies.rules`` importable: the pack directory lives at the repository root, uninstalled."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


_pack_importable()

from policies.rules import ALL_POLICIES, META, Control, Policy, resolve  # noqa: E402

# --------------------------------------------------------------------------- the pack's own metadata


@dataclass(frozen=True)
class PackInfo:
    name: str
    version: str
    description: str
    display_name: str
    tags: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "displayName": self.display_name,
                "description": self.description, "tags": list(self.tags)}


def pack_info(pack_dir: Path = PACK_DIR) -> PackInfo:
    """Name, display name and tags from the ``PolicyPack(...)`` call in ``__main__.py`` (read, never run: it
    would start the analyzer's gRPC server) and the version from ``PulumiPolicy.yaml``."""
    kwargs: dict[str, Any] = {}
    tree = ast.parse((pack_dir / "__main__.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "PolicyPack":
            for kw in node.keywords:
                try:
                    kwargs[str(kw.arg)] = ast.literal_eval(kw.value)
                except ValueError:
                    continue
    manifest = read_yaml(pack_dir / "PulumiPolicy.yaml")
    manifest = manifest if isinstance(manifest, dict) else {}
    name = str(kwargs.get("name", pack_dir.name))
    return PackInfo(
        name=name,
        version=str(manifest.get("version", "0.0.0")),
        description=str(kwargs.get("description") or manifest.get("description") or ""),
        display_name=str(kwargs.get("display_name") or name),
        tags=tuple(str(t) for t in kwargs.get("tags") or ()),
    )


# --------------------------------------------------------------------------- the engine's view of a plan


@dataclass(frozen=True)
class EngineResource:
    """One resource as the engine knows it after the update: what Analyze/AnalyzeStack are built from."""

    type: str
    name: str
    urn: str
    custom: bool
    id: str | None
    parent: str | None  # engine URN
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    provider: str | None  # engine URN of the provider resource
    dependencies: tuple[str, ...]  # engine URNs


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def _parse_provider_ref(ref: str) -> str:
    """``<urn>::<id>`` -> ``<urn>`` (a provider reference, as the SDK sends it)."""
    return ref.rsplit("::", 1)[0]


def _package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(f"pulumi_{package}")
    except importlib.metadata.PackageNotFoundError:
        return None


def default_provider_name(version: str | None) -> str:
    """The engine's name for a default provider: ``default`` or ``default_<major>_<minor>_<patch>``."""
    if not version:
        return "default"
    core, _, rest = version.partition("+")
    main, _, pre = core.partition("-")
    parts = [*main.split("."), "0", "0"][:3]
    name = "default_" + "_".join(parts)
    for extra in (pre, rest):
        if extra:
            name += "_" + "_".join(extra.split("."))
    return name


def _mock_outputs(plan: Any, typ: str, name: str, inputs: Mapping[str, Any], rid: str | None) -> dict[str, Any]:
    """The outputs the offline mocks returned for this registration (they are a pure function of it)."""
    from pulumi.runtime import MockResourceArgs

    from servekit.offline import RecordingMocks

    got_id, state = RecordingMocks(plan.region).new_resource(MockResourceArgs(typ, name, dict(inputs), custom=True))
    return dict(state) if got_id == rid else {}


def engine_resources(plan: Any, provider_config: Mapping[str, Mapping[str, Any]] | None = None) -> list[EngineResource]:
    """Translate the plan's mock-monitor records into the engine's resources (plus default providers).

    ``provider_config`` maps a package (``aws``) to its config keys without the namespace
    (``{"region": "us-east-1"}``); the default is the plan's region for ``aws``.
    """
    from servekit.offline import Plan

    assert isinstance(plan, Plan)
    provider_config = provider_config if provider_config is not None else {"aws": {"region": plan.region}}
    by_mock = {r.urn: r for r in plan.resources}
    engine_urn: dict[str, str] = {}

    def urn_of(mock_urn: str) -> str:
        if mock_urn in engine_urn:
            return engine_urn[mock_urn]
        r = by_mock[mock_urn]
        stack, project = mock_urn.split("::")[0].removeprefix("urn:pulumi:"), mock_urn.split("::")[1]
        qualified = r.type
        if r.parent is not None and r.parent in by_mock:
            parent_type = _qualified_type(urn_of(r.parent))
            if parent_type != ROOT_STACK_TYPE:
                qualified = f"{parent_type}${r.type}"
        engine_urn[mock_urn] = f"urn:pulumi:{stack}::{project}::{qualified}::{r.name}"
        return engine_urn[mock_urn]

    for r in plan.resources:
        urn_of(r.urn)

    defaults: dict[str, EngineResource] = {}
    out: list[EngineResource] = []
    for r in plan.resources:
        urn = engine_urn[r.urn]
        provider: str | None = None
        if r.provider:
            provider = engine_urn.get(_parse_provider_ref(r.provider), _parse_provider_ref(r.provider))
        elif r.custom and not r.type.startswith(PROVIDER_PREFIX):
            package = r.type.split(":")[0]
            if package not in defaults:
                version = _package_version(package)
                name = default_provider_name(version)
                stack, project = urn.split("::")[0].removeprefix("urn:pulumi:"), urn.split("::")[1]
                inputs: dict[str, Any] = {k: v if isinstance(v, str) else json.dumps(v)
                                          for k, v in provider_config.get(package, {}).items()}
                if version:
                    inputs["version"] = version
                defaults[package] = EngineResource(
                    type=f"{PROVIDER_PREFIX}{package}", name=name,
                    urn=f"urn:pulumi:{stack}::{project}::{PROVIDER_PREFIX}{package}::{name}", custom=True,
                    id=None, parent=None, inputs=inputs, outputs=dict(inputs), provider=None, dependencies=())
            provider = defaults[package].urn
        if r.type == ROOT_STACK_TYPE:
            outputs: dict[str, Any] = dict(plan.outputs)
        elif r.type.startswith(PROVIDER_PREFIX):
            outputs = dict(r.inputs)
        elif r.custom:
            outputs = {**r.inputs, **_mock_outputs(plan, r.type, r.name, r.inputs, r.id)}
            if r.id is not None:
                outputs["id"] = r.id
        else:
            outputs = {}
        out.append(EngineResource(
            type=r.type, name=r.name, urn=urn, custom=r.custom, id=r.id,
            parent=engine_urn.get(r.parent) if r.parent else None, inputs=dict(r.inputs), outputs=outputs,
            provider=provider, dependencies=tuple(engine_urn.get(d, d) for d in r.dependencies)))
    return [*defaults.values(), *out]


def _wire(value: Mapping[str, Any]) -> dict[str, Any]:
    """What a policy receives after the value crossed the gRPC boundary (a Struct: numbers become floats)."""
    s = struct_pb2.Struct()
    json_format.ParseDict(copy.deepcopy(dict(value)), s)
    return deserialize_properties(json_format.MessageToDict(s))


def _options(parent: str | None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


# --------------------------------------------------------------------------- read tracking (per-policy applicability)


class _Reads:
    """URNs whose properties the running policy read: a policy that read none had nothing to check."""

    def __init__(self) -> None:
        self.urns: set[str] = set()


class _Tracked(_DictProxy):
    """pulumi-policy's own top-level props proxy, noting in ``reads`` that the resource's properties were read."""

    def __init__(self, target: dict[str, Any], urn: str, reads: _Reads) -> None:
        super().__init__(target, [])
        self._servekit_urn = urn
        self._servekit_reads = reads

    def __getitem__(self, key: Any) -> Any:
        if key != "__target":
            self._servekit_reads.urns.add(self._servekit_urn)
        return super().__getitem__(key)

    def __iter__(self) -> Any:
        self._servekit_reads.urns.add(self._servekit_urn)
        return super().__iter__()

    def __len__(self) -> int:
        self._servekit_reads.urns.add(self._servekit_urn)
        return int(super().__len__())


def _tracked(props: Mapping[str, Any], urn: str, reads: _Reads) -> Any:
    """``unknown_checking_proxy(props)`` (a fresh structural copy, as each policy gets), read-tracked."""
    return _Tracked(unknown_checking_proxy(dict(props))["__target"], urn, reads)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Violation:
    policy: str
    severity: str
    enforcement: str
    resource_type: str
    resource_name: str
    urn: str
    message: str
    frameworks: tuple[str, ...]
    remediation: str

    @property
    def mandatory(self) -> bool:
        return self.enforcement == EnforcementLevel.MANDATORY.value

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "severity": self.severity, "enforcementLevel": self.enforcement,
                "resourceType": self.resource_type, "resourceName": self.resource_name, "urn": self.urn,
                "message": self.message, "frameworks": list(self.frameworks), "remediation": self.remediation,
                # the names issue #7 gives the JSON report
                "resource": self.resource_name, "enforcement": self.enforcement}


@dataclass(frozen=True)
class PolicyInfo:
    """What a report says about a policy: the policy object's own metadata, with the pack's full list of
    framework controls (``policies/rules/_meta.py``; the engine's ``framework`` field holds only the first)."""

    display_name: str
    concern: str
    description: str
    severity: str
    remediation: str
    url: str
    controls: tuple[Control, ...]

    @classmethod
    def of(cls, policy: Policy) -> PolicyInfo:
        row = META.get(policy.name)
        if row is not None:
            controls = row.controls
        elif policy.framework is not None:
            fw = policy.framework
            controls = (Control(fw.name or "", fw.version or "", fw.reference or "", fw.specification or ""),)
        else:
            controls = ()
        return cls(
            display_name=policy.display_name or policy.name, concern=row.concern if row is not None else "",
            description=policy.description, severity=policy.severity.value if policy.severity else "",
            remediation=policy.remediation_steps or "", url=policy.url or "", controls=controls)

    @property
    def tags(self) -> list[str]:
        return [t for t in (self.concern, *sorted({c.framework for c in self.controls})) if t]


@dataclass
class PolicyResult:
    name: str
    kind: str  # resource | stack
    enforcement: str  # effective level for this stack
    default_enforcement: str
    config: dict[str, Any]
    meta: PolicyInfo
    # pass | fail | disabled (by config) | not-applicable (the policy said so through args.not_applicable)
    # | unknown (it could not run: a value unknown at preview). A pass with nothing in ``checked`` read no
    # resource's properties: nothing of the kinds it checks exists in the stack, or its config turns it off.
    status: str = "pass"
    violations: int = 0
    checked: list[str] = field(default_factory=list)  # URNs whose properties the policy read
    notes: list[str] = field(default_factory=list)  # not-applicable reasons, "can't run during preview" notes

    @property
    def severity(self) -> str:
        return self.meta.severity

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(f"{c.framework} {c.reference}" for c in self.meta.controls)

    def to_json(self) -> dict[str, Any]:
        m = self.meta
        return {
            "name": self.name, "displayName": m.display_name, "kind": self.kind, "concern": m.concern,
            "description": m.description, "severity": self.severity, "enforcementLevel": self.enforcement,
            "defaultEnforcementLevel": self.default_enforcement, "status": self.status,
            "violations": self.violations, "resourcesChecked": len(self.checked),
            "frameworks": [{"framework": c.framework, "version": c.version, "reference": c.reference,
                            "title": c.title} for c in m.controls],
            "remediation": m.remediation, "url": m.url, "config": self.config, "notes": list(self.notes),
        }


@dataclass
class AuditReport:
    stack: str
    region: str
    pack: PackInfo
    policy_config: str  # the config file, as given / shown
    stack_file: str | None
    resources: int
    policies: list[PolicyResult]
    violations: list[Violation]
    warnings: list[str] = field(default_factory=list)
    # The stack file as a SARIF artifact URI: relative to the repository root when it lies inside it.
    stack_uri: str | None = None

    @property
    def mandatory_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.mandatory]

    @property
    def exit_code(self) -> int:
        """1 when any mandatory policy is violated (``pulumi preview`` would fail), else 0."""
        return 1 if self.mandatory_violations else 0

    def counts(self) -> dict[str, int]:
        by = {s: sum(1 for p in self.policies if p.status == s)
              for s in ("pass", "fail", "not-applicable", "disabled", "unknown")}
        return {"policies": len(self.policies), "passed": by["pass"], "failed": by["fail"],
                "notApplicable": by["not-applicable"], "disabled": by["disabled"], "unknown": by["unknown"],
                "violations": len(self.violations), "mandatoryViolations": len(self.mandatory_violations),
                "advisoryViolations": len(self.violations) - len(self.mandatory_violations),
                "resources": self.resources}

    def summary_line(self) -> str:
        c = self.counts()
        verdict = "FAIL" if self.exit_code else "PASS"
        return (f"{verdict} {self.stack}: {c['policies']} policies - {c['passed']} passed, {c['failed']} failed, "
                f"{c['notApplicable']} not applicable, {c['disabled']} disabled; {c['mandatoryViolations']} "
                f"mandatory and {c['advisoryViolations']} advisory violation(s) over {c['resources']} resources")

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "region": self.region, "pack": self.pack.to_json(),
            "policyConfig": self.policy_config, "stackFile": self.stack_file, "passed": self.exit_code == 0,
            "summary": self.counts(), "policies": [p.to_json() for p in self.policies],
            "violations": [v.to_json() for v in self.violations], "warnings": list(self.warnings),
        }


def sort_violations(violations: Iterable[Violation]) -> list[Violation]:
    """Mandatory before advisory, then by severity (critical first), policy and URN."""
    return sorted(violations, key=lambda v: (not v.mandatory, SEVERITY_ORDER.get(v.severity, 9), v.policy, v.urn))


# --------------------------------------------------------------------------- running the pack


def _level_value(level: EnforcementLevel) -> str:
    return EnforcementLevel.MANDATORY.value if level == EnforcementLevel.REMEDIATE else level.value


def _run(policy: Policy, args: ResourceValidationArgs | StackValidationArgs,
         report: Callable[[str, str | None], None]) -> None:
    """``policy.validate`` as the analyzer calls it (awaitables on a fresh event loop)."""
    result = policy.validate(args, report)  # type: ignore[arg-type]
    if isawaitable(result):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(result)
        finally:
            loop.close()


@dataclass
class _Context:
    """Everything one audit shares across policies: the engine's resources, wired once."""

    pack: PackInfo
    resources: list[EngineResource]
    by_urn: dict[str, EngineResource]
    root: str
    tags: dict[str, str]
    inputs: dict[str, dict[str, Any]]  # resource policies see inputs
    state: dict[str, dict[str, Any]]  # stack policies see inputs + outputs + id
    providers: dict[str, PolicyProviderResource | None]


def _context(plan: Any, provider_config: Mapping[str, Mapping[str, Any]] | None,
             stack_tags: Mapping[str, str] | None) -> _Context:
    resources = engine_resources(plan, provider_config)
    by_urn = {r.urn: r for r in resources}

    def provider_of(r: EngineResource) -> PolicyProviderResource | None:
        p = by_urn.get(r.provider) if r.provider else None
        if p is None:
            return None
        return PolicyProviderResource(p.type, unknown_checking_proxy(_wire(p.inputs)), p.urn, p.name)

    root = next((r.urn for r in resources if r.type == ROOT_STACK_TYPE),
                f"urn:pulumi:{plan.stack}::servekit::{ROOT_STACK_TYPE}::servekit-{plan.stack}")
    return _Context(
        pack=pack_info(), resources=resources, by_urn=by_urn, root=root,
        tags=dict(stack_tags) if stack_tags is not None else default_stack_tags(),
        inputs={r.urn: _wire(r.inputs) for r in resources}, state={r.urn: _wire(r.outputs) for r in resources},
        providers={r.urn: provider_of(r) for r in resources})


class _PolicyRun:
    """One policy over the whole stack, the way the analyzer runs it; fills ``result`` and ``violations``."""

    def __init__(self, ctx: _Context, policy: Policy, result: PolicyResult, violations: list[Violation]) -> None:
        self.ctx = ctx
        self.policy = policy
        self.result = result
        self.violations = violations
        self.reads = _Reads()
        self.not_applicable: list[str] = []
        self.evaluated = 0

    def _violation(self, message: str, at: EngineResource | None) -> None:
        target = at if at is not None else self.ctx.by_urn.get(self.ctx.root)
        m = self.result.meta
        self.violations.append(Violation(
            policy=self.policy.name, severity=m.severity, enforcement=self.result.enforcement,
            resource_type=target.type if target is not None else ROOT_STACK_TYPE,
            resource_name=target.name if target is not None else "",
            urn=target.urn if target is not None else self.ctx.root, message=message,
            frameworks=self.result.frameworks, remediation=m.remediation))

    def _attempt(self, args: ResourceValidationArgs | StackValidationArgs, fixed: EngineResource | None) -> None:
        self.evaluated += 1

        def report(message: str, urn: str | None = None) -> None:
            if message and not isinstance(message, str):
                raise TypeError("Expected message to be a string")
            if urn is not None and not isinstance(urn, str):
                raise TypeError("Expected urn to be a string")
            # A resource policy's violation is the resource's; a stack policy's names a resource of the
            # stack, else the stack itself (the engine's rule).
            self._violation(message or "", fixed if fixed is not None else self.ctx.by_urn.get(urn or ""))

        try:
            _run(self.policy, args, report)
        except UnknownValueError as e:
            pack = self.ctx.pack
            self.result.notes.append(f"can't run policy '{self.policy.name}' from policy pack "
                                     f"'{pack.name}@v{pack.version}' during preview: {e.message}")
        except _NotApplicableError as e:
            self.not_applicable.append(e.reason or "Policy does not apply")

    def run(self, config: dict[str, Any] | None) -> None:
        ctx = self.ctx
        if isinstance(self.policy, ResourceValidationPolicy):
            for r in ctx.resources:
                props = _tracked(ctx.inputs[r.urn], r.urn, self.reads)  # the proxy copies
                self._attempt(ResourceValidationArgs(r.type, props, r.urn, r.name, _options(r.parent),
                                                     ctx.providers[r.urn], copy.deepcopy(config), ctx.tags), r)
        else:
            built = {r.urn: PolicyResource(r.type, _tracked(ctx.state[r.urn], r.urn, self.reads),
                                           r.urn, r.name, _options(r.parent), ctx.providers[r.urn], None, [], {})
                     for r in ctx.resources}
            for r in ctx.resources:
                if r.parent in built:
                    built[r.urn].parent = built[r.parent]
                built[r.urn].dependencies.extend(built[d] for d in r.dependencies if d in built)
            self._attempt(StackValidationArgs(list(built.values()), copy.deepcopy(config), ctx.tags), None)
        self._conclude()

    def _conclude(self) -> None:
        res = self.result
        res.violations = sum(1 for v in self.violations if v.policy == self.policy.name)
        res.checked = sorted(self.reads.urns)
        res.notes.extend(sorted(set(self.not_applicable)))
        if res.violations:
            res.status = "fail"
        elif any(n.startswith("can't run policy") for n in res.notes):
            res.status = "unknown"
        elif self.not_applicable and len(self.not_applicable) == self.evaluated:
            res.status = "not-applicable"


def audit_plan(
    plan: Any,
    pack_config: Mapping[str, Any],
    *,
    provider_config: Mapping[str, Mapping[str, Any]] | None = None,
    stack_tags: Mapping[str, str] | None = None,
    policies: Sequence[Policy] | None = None,
    policy_config_name: str = "",
    stack_file: str | None = None,
    warnings: Sequence[str] = (),
) -> AuditReport:
    """Run every enabled policy over ``plan`` with ``pack_config`` (a ``--policy-pack-config`` document).

    ``plan`` may be one :func:`servekit.offline.plan_stack` returned or a modified copy of it (tests seed
    violations the stack file cannot express that way).
    """
    from servekit.offline import Plan

    assert isinstance(plan, Plan)
    policies = list(policies if policies is not None else ALL_POLICIES)
    resolved = resolve(policies, pack_config)
    ctx = _context(plan, provider_config, stack_tags)
    results: list[PolicyResult] = []
    violations: list[Violation] = []
    for policy in policies:
        eff = resolved[policy.name]
        kind = "stack" if isinstance(policy, StackValidationPolicy) else "resource"
        default = policy.enforcement_level or EnforcementLevel.ADVISORY
        result = PolicyResult(policy.name, kind, _level_value(eff.enforcement), default.value, dict(eff.config),
                              PolicyInfo.of(policy))
        results.append(result)
        if eff.enforcement == EnforcementLevel.DISABLED:
            result.status = "disabled"
            continue
        # Configure() receives the reconciled config as a Struct; an empty one reaches the policy as None.
        _PolicyRun(ctx, policy, result, violations).run(_wire(eff.config) or None)
    return AuditReport(
        stack=plan.stack, region=plan.region, pack=ctx.pack, policy_config=policy_config_name, stack_file=stack_file,
        resources=len(ctx.resources), policies=results, violations=sort_violations(violations),
        warnings=list(warnings))


def default_stack_tags() -> dict[str, str]:
    """The tags the CLI gives every stack of this project (Pulumi.yaml's name, runtime and description)."""
    raw = read_yaml(REPO_ROOT / "Pulumi.yaml")
    raw = raw if isinstance(raw, dict) else {}
    runtime = raw.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    tags = {"pulumi:project": str(raw.get("name", "servekit")), "pulumi:runtime": str(runtime_name or "python")}
    if raw.get("description"):
        tags["pulumi:description"] = str(raw["description"])
    return tags


# --------------------------------------------------------------------------- a stack, end to end


def load_policy_config(path: Path) -> dict[str, Any]:
    """A ``--policy-pack-config`` file; UserError (exit 2) when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("policy config file not found", file=path) from None
    except json.JSONDecodeError as e:
        raise UserError(f"not valid JSON ({e.msg} at line {e.lineno})", file=path) from None
    if not isinstance(data, dict):
        raise UserError("expected a JSON object at the top level", file=path)
    known = {p.name for p in ALL_POLICIES} | {"all"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError("unknown policy name(s) (a typo? the engine would ignore them)", file=path,
                        given=", ".join(unknown), allowed="all, " + ", ".join(sorted(known - {"all"})))
    return data


def with_stack_budget(pack_config: Mapping[str, Any], stack_budget: Any, *, config_file: str,
                      stack_file: str) -> tuple[dict[str, Any], list[str]]:
    """Fill ``monthly-budget.budgetMonthlyUsd`` from the stack file when the policy config leaves it out.

    Returns (config, warnings); a warning when both are set and differ (the config's figure is enforced).
    """
    config = copy.deepcopy(dict(pack_config))
    if stack_budget is None or isinstance(stack_budget, bool) or not isinstance(stack_budget, int | float):
        return config, []
    entry = config.get(BUDGET_POLICY)
    if isinstance(entry, str):  # just an enforcement level
        entry = {"enforcementLevel": entry}
    entry = dict(entry) if isinstance(entry, Mapping) else {}
    if BUDGET_KEY not in entry:
        entry[BUDGET_KEY] = stack_budget
        config[BUDGET_POLICY] = entry
        return config, []
    given = entry[BUDGET_KEY]
    if isinstance(given, int | float) and float(given) != float(stack_budget):
        return config, [f"two budgets: {config_file} sets {BUDGET_POLICY}.{BUDGET_KEY}={given:g} (enforced, also by "
                        f"pulumi preview) but {stack_file} sets {STACK_BUDGET_KEY}={stack_budget:g} (used by "
                        f"servekit cost); make them agree"]
    return config, []


def audit_stack(
    stack: str, stacks_dir: Path | None = None, *, policy_config: Path | None = None, plan: Any = None,
    pack_defaults_if_missing: bool = False,
) -> AuditReport:
    """Plan ``stack`` offline and audit it with ``policy_config`` (default ``policies/config/<stack>.json``).

    ``plan``: the stack's plan when the caller already has it (``servekit plan``), to plan only once.
    ``pack_defaults_if_missing``: a stack without a policy config file is audited at the pack's own
    default enforcement levels (with a warning) instead of being an error - what ``plan`` wants.
    """
    from servekit.offline import _display, plan_stack, stack_config
    from servekit.stackfile import STACKS_DIR

    stacks_dir = stacks_dir if stacks_dir is not None else STACKS_DIR
    path, config, _notes = stack_config(stack, stacks_dir)
    config_path = policy_config if policy_config is not None else CONFIG_DIR / f"{stack}.json"
    missing = policy_config is None and not config_path.exists()
    if missing and not pack_defaults_if_missing:
        raise UserError(f"no policy config for stack {stack!r}; create it or pass --policy-config FILE",
                        file=_display(config_path))
    pack_config = {} if missing else load_policy_config(config_path)
    if plan is None:
        plan = plan_stack(stack, stacks_dir)
    shown_config, shown_stack = _display(config_path), _display(path)
    effective, warnings = with_stack_budget(pack_config, config.get(STACK_BUDGET_KEY), config_file=shown_config,
                                            stack_file=shown_stack)
    providers: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        package, _, name = key.partition(":")
        if package in ("aws", "kubernetes") and name:
            providers.setdefault(package, {})[name] = value
    if missing:
        warnings = [f"{shown_config} does not exist: audited at the pack's default enforcement levels", *warnings]
    report = audit_plan(plan, effective, provider_config=providers, policy_config_name=shown_config,
                        stack_file=shown_stack, warnings=warnings)
    report.stack_uri = artifact_uri(path)
    return report


def artifact_uri(path: Path) -> str:
    """``stacks/Pulumi.prod.yaml`` for a file in the repository (code scanning resolves it), else a file URI."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return resolved.as_uri()
