"""The SLA gate: after a deploy, a Kubernetes Job per model measures the SLA and fails ``pulumi up`` unless PASS.

It runs ``python -m loadtests.gate`` (its docstring is the contract: ``SERVEKIT_ENDPOINT``,
``SERVEKIT_MODEL``, ``SERVEKIT_P95_SECONDS``, ``SERVEKIT_CONCURRENCY`` ...) against the model's
Service, at concurrency = SLA batch x replicas, with the SLA numbers of the stack file.

Decisions
---------

**One Job per model**, not one for all: each model gets its own verdict, log and exit code, so
``pulumi up`` names the model that failed; a Job re-runs only when *its* model changes; and the
load of one model never skews another's measurement through a shared client process. Jobs of
different models run at the same time (their replicas own separate GPUs).

**Where the code comes from.** The servekit image is not published and no registry is assumed, so
the Job runs the **pinned Locust image** (``locustio/locust:<the Locust version the test suite
runs>``; it ships Locust, gevent and psutil) with the gate's code mounted from a **ConfigMap**: the
exact import closure of ``loadtests.gate`` and ``loadtests.worker`` (their first-party modules,
found by walking the imports, plus the data files they read), so the Job runs the code in this
commit. The closure also imports pydantic and PyYAML (``servekit.spec``, ``servekit.workloads``),
which the Locust image lacks; an init container installs them, pinned (``GATE_REQUIREMENTS`` = the
versions the test suite runs, binary wheels only, ``--no-deps`` over a closed set), into an
``emptyDir`` on ``PYTHONPATH``:

- with NAT egress from PyPI;
- with ``egress: none`` there is no PyPI, so a first init container (the AWS CLI image, through the
  ECR mirror) copies a **wheelhouse** from the model store (``s3://<store>/servekit/sla-gate/wheels/``)
  and pip installs from it with ``--no-index``. The operator uploads it once, like the weights
  (docs/monitoring.md: ``pip download --only-binary=:all: --platform manylinux2014_x86_64
  --python-version 3.13 ...`` then ``aws s3 sync``); without it the Job fails naming the missing
  wheels.

Trade-offs, stated: start-up costs a pip install (seconds) and a public-registry dependency with
NAT; the Locust image's Python (3.13 in Locust's Dockerfile; (U) for this tag) decides the wheel
ABI; the ConfigMap holds ~130 kB of source (limit 1 MiB). A published servekit image would remove
all three.

**Waiting for the rollout.** The Job uses the model's Service and namespace outputs, so Pulumi
creates it after them (the Service's await wants ready endpoints). On an *update* the Deployment may
still be rolling, so an init container runs ``kubectl rollout status deployment/<model>`` (RBAC:
``get``/``list``/``watch`` on that one Deployment, a token projected into that container only) with
the Deployment's own progress deadline, and only then does the load start.

**Failing ``pulumi up``.** No ``pulumi.com/skipAwait``: pulumi-kubernetes awaits a Job until it
completes and fails the update when the Job fails. The gate exits non-zero unless the verdict is
PASS (1 FAIL, 4 INCONCLUSIVE, 5 INVALID, 2 bad config, 3 endpoint never healthy), ``backoffLimit:
0`` turns that into a failed Job (no retry that could pass by luck), ``activeDeadlineSeconds``
bounds it, and ``pulumi.com/timeoutSeconds`` exceeds that deadline so the Job's own failure, not
Pulumi's timeout, is what ``pulumi up`` reports. The verdict (Markdown + JSON) is in the Job log;
``ttlSecondsAfterFinished`` keeps the Job a day for ``kubectl logs``. The Job's name carries a
fingerprint of what it measures (vLLM image, placement, SLA, gate code and pins): when that changes
Pulumi replaces the Job, i.e. the gate re-runs after every deploy that changes the model, and not on
unrelated ``pulumi up``\\ s.

Security: namespace ``servekit-sla-gate`` enforces Pod Security "restricted"; every container runs
as a non-root UID with a read-only root filesystem, no capabilities and no privilege escalation;
no service-account token except the projected one in the rollout waiter; default-deny
NetworkPolicies with egress only to DNS, the models' vLLM pods (port 8000), HTTPS (PyPI or S3, and
the API server) and, with egress none, the Pod Identity agent. The vLLM NetworkPolicy admits pods
labelled ``servekit.io/role: sla-gate``, which the policy pack also requires on prod.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components._common import assume_role_policy
from components.cluster import SYSTEM_NODE_SELECTOR
from components.image_mirror import mirrored_reference
from components.restart import KUBECTL_IMAGES
from components.vllm_service import pod_budget
from servekit.catalog import REPO_ROOT, Catalog, default_catalog
from servekit.engine_args import VLLM_PORT
from servekit.errors import UserError
from servekit.sizing import Placement
from servekit.spec import DeploymentSpec, Egress, ModelDeployment
from servekit.vllm_flags import VLLM_IMAGE

if TYPE_CHECKING:
    from components.platform import PlatformContext

GATE_NAMESPACE = "servekit-sla-gate"
GATE_ROLE = "sla-gate"  # servekit.io/role: the vLLM NetworkPolicy admits it; the policy pack looks for it
LOCUST_VERSION = "2.47.0"  # = the locust the test suite runs (tests/components/test_sla_gate.py checks)
LOCUST_IMAGE = f"locustio/locust:{LOCUST_VERSION}"
# (U) tag not checked against the registry from here; any pinned AWS CLI v2 works (only `aws s3 sync`).
AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli:2.27.50"
# What loadtests.gate imports beyond the Locust image, pinned to the versions the tests run with,
# as a closed set installed with --no-deps (tests check it against the installed distributions).
GATE_REQUIREMENTS: tuple[tuple[str, str], ...] = (
    ("pydantic", "2.14.4"),
    ("pydantic-core", "2.50.5"),
    ("annotated-types", "0.8.0"),
    ("typing-inspection", "0.4.5"),
    ("typing-extensions", "4.16.0"),
    ("PyYAML", "6.0.4"),
)
PYPI_INDEX = "https://pypi.org/simple"
WHEELHOUSE_PREFIX = "servekit/sla-gate/wheels"
GATE_ROOTS = ("loadtests.gate", "loadtests.worker")  # the gate and the worker processes it spawns
FIRST_PARTY = ("loadtests", "servekit")
UID = 1000  # non-root; the Locust image's own user is created by `useradd` (UID 1000 on Debian)
SRC_DIR, DEPS_DIR, WHEELS_DIR, TMP_DIR = "/opt/servekit/src", "/opt/servekit/deps", "/opt/servekit/wheels", "/tmp"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
POD_IDENTITY_AGENT = "169.254.170.23/32"
DURATION_SECONDS = 60  # measurement window (the gate's default)
INSTALL_SECONDS = 300  # wheels + pip install budget
READY_SECONDS = 300  # the gate's wait for /health once the rollout is complete
SLACK_SECONDS = 120  # report writing, process start, scheduling
USERS_PER_PROCESS = 256  # = loadtests.gate.USERS_PER_PROCESS


# --------------------------------------------------------------------------- the code the Job runs


@dataclass(frozen=True)
class GateCode:
    files: dict[str, str]  # relative path (``loadtests/gate.py``) -> text
    third_party: frozenset[str]  # top-level import names outside the stdlib and first-party packages

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path].encode() + b"\0")
        return h.hexdigest()


def _module_file(module: str, root: Path) -> Path | None:
    base = root / Path(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


# Data files a module reads next to itself: Path(__file__).parent / "data" / "x.yaml", or "data/x.json".
_DATA_REF = re.compile(r"""["']data["']\s*/\s*["']([\w.-]+)["']|["']data/([\w.-]+)["']""")


@cache
def gate_code(root: Path = REPO_ROOT, roots: tuple[str, ...] = GATE_ROOTS) -> GateCode:
    """The first-party import closure of ``roots`` (with package ``__init__`` files and data files)."""
    files: dict[str, str] = {}
    third: set[str] = set()
    todo = list(roots)
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module, root)
        if path is None:
            continue  # ``from pkg import name`` where name is not a module
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        text = path.read_text(encoding="utf-8")
        files[path.relative_to(root).as_posix()] = text
        for ref in _DATA_REF.finditer(text):
            data = path.parent / "data" / (ref.group(1) or ref.group(2))
            if data.is_file():
                files[data.relative_to(root).as_posix()] = data.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                top = name.split(".")[0]
                if top in FIRST_PARTY:
                    todo.append(name)
                elif top not in sys.stdlib_module_names:
                    third.add(top)
    return GateCode(files=files, third_party=frozenset(third))


def config_key(path: str) -> str:
    """A ConfigMap key for a relative path (keys may not contain ``/``)."""
    return path.replace("/", "__")


def requirements_txt() -> str:
    return "".join(f"{name}=={version}\n" for name, version in GATE_REQUIREMENTS)


# --------------------------------------------------------------------------- per-model plan


@dataclass(frozen=True)
class GatePlan:
    """Everything about one model's gate that does not need the cloud."""

    model: str
    concurrency: int
    processes: int
    request_timeout_seconds: int
    rollout_timeout_seconds: int
    deadline_seconds: int
    await_seconds: int
    fingerprint: str
    env: dict[str, str]  # the loadtests.gate contract (without SERVEKIT_ENDPOINT, which is an Output)

    @property
    def job_name(self) -> str:
        return f"sla-gate-{self.model}-{self.fingerprint[:8]}"

    @property
    def cpu_millicores(self) -> int:
        return 1000 * self.processes

    @property
    def memory_mib(self) -> int:
        return 512 + 256 * self.processes


def gate_plan(dep: ModelDeployment, placement: Placement, *, catalog: Catalog, code_digest: str) -> GatePlan:
    sla = dep.sla
    concurrency = sla.concurrency_per_replica * placement.replicas
    processes = max(1, math.ceil(concurrency / USERS_PER_PROCESS))
    timeout = math.ceil(max(60.0, 4 * sla.p95_e2e_seconds))  # = loadtests.gate's default
    instance = catalog.instances[placement.instance_type]
    rollout = pod_budget(placement, dep, instance).progress_deadline_seconds
    # install, rollout, health, one warm-up wave, the window, the drain, reports.
    deadline = INSTALL_SECONDS + rollout + READY_SECONDS + timeout + DURATION_SECONDS + timeout + SLACK_SECONDS
    env = {
        "SERVEKIT_MODEL": dep.name,
        "SERVEKIT_P95_SECONDS": f"{sla.p95_e2e_seconds:g}",
        "SERVEKIT_CONCURRENCY": str(concurrency),
        "SERVEKIT_MAX_ERROR_RATE": f"{sla.max_error_rate:g}",
        "SERVEKIT_WORKLOAD": sla.workload.value,
        "SERVEKIT_DURATION_SECONDS": str(DURATION_SECONDS),
        "SERVEKIT_WARMUP_WAVES": "1",
        "SERVEKIT_REQUEST_TIMEOUT_SECONDS": str(timeout),
        "SERVEKIT_PROCESSES": str(processes),
        "SERVEKIT_READY_TIMEOUT_SECONDS": str(READY_SECONDS),
    }
    if sla.p95_ttft_seconds is not None:
        env["SERVEKIT_P95_TTFT_SECONDS"] = f"{sla.p95_ttft_seconds:g}"
    fingerprint = hashlib.sha256(json.dumps({
        "vllm": VLLM_IMAGE, "locust": LOCUST_IMAGE, "placement": placement.to_json(), "sla": sla.to_json(),
        "code": code_digest, "requirements": GATE_REQUIREMENTS, "env": env,
    }, sort_keys=True, default=str).encode()).hexdigest()
    return GatePlan(model=dep.name, concurrency=concurrency, processes=processes, request_timeout_seconds=timeout,
                    rollout_timeout_seconds=rollout, deadline_seconds=deadline,
                    await_seconds=deadline + SLACK_SECONDS, fingerprint=fingerprint, env=env)


def endpoint(service: str, namespace: str, port: int) -> str:
    """The gate's base URL (no ``/v1``: it appends ``/health``, ``/v1/chat/completions``, ``/metrics``)."""
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


# --------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class ModelTarget:
    """A deployed model as components.vllm_service reports it (its outputs)."""

    namespace: pulumi.Input[str]
    service: pulumi.Input[str]
    port: int = VLLM_PORT
    served_model_name: str | None = None


@dataclass(frozen=True)
class SlaGateArgs:
    spec: DeploymentSpec
    placements: Sequence[Placement]
    targets: Mapping[str, ModelTarget]  # model name -> where it answers
    cluster_name: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)
    mirror_registry: pulumi.Input[str] | None = None  # egress none: ECR pull-through registry host
    wheel_bucket: pulumi.Input[str] | None = None  # egress none: the model store holding the wheelhouse
    catalog: Catalog | None = None
    depends_on: Sequence[pulumi.Resource] = ()


class SlaGate(pulumi.ComponentResource):
    """Namespace, code ConfigMap, RBAC, NetworkPolicies and one awaited Job per model."""

    plans: dict[str, GatePlan]
    job_names: dict[str, str]

    def __init__(self, name: str, args: SlaGateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:sla_gate:SlaGate", name, {}, opts)
        spec = args.spec
        air_gapped = spec.network.egress is Egress.NONE
        if air_gapped and (args.mirror_registry is None or args.wheel_bucket is None):
            raise UserError("network.egress is none: the SLA gate needs the ECR mirror and the model store "
                            "(for its wheelhouse)", path="config.servekit:slaGate", given=True)
        catalog = args.catalog or default_catalog()
        code = gate_code()
        child = pulumi.ResourceOptions(parent=self)
        common = {"app.kubernetes.io/part-of": "servekit", "app.kubernetes.io/component": GATE_ROLE}

        def image(ref: str) -> pulumi.Input[str]:
            if args.mirror_registry is None:
                return ref
            return pulumi.Output.from_input(args.mirror_registry).apply(lambda r: mirrored_reference(ref, r))

        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATE_NAMESPACE, labels={
                **common, "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted"}),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)))
        namespace = ns.metadata.name
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=k8s.meta.v1.ObjectMetaArgs(name=GATE_ROLE, namespace=namespace, labels=common),
            automount_service_account_token=False, opts=child)
        files = {config_key(p): t for p, t in sorted(code.files.items())}
        files["requirements.txt"] = requirements_txt()
        config = k8s.core.v1.ConfigMap(
            f"{name}-code",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="sla-gate-code", namespace=namespace, labels=common,
                                                annotations={"servekit.io/code-sha256": code.digest}),
            data=files, opts=child)
        deps: list[pulumi.Resource] = [sa, config, *self._network_policies(name, spec, namespace, common, air_gapped)]
        if air_gapped:
            deps.append(self._wheel_reader(name, args, namespace))

        self.plans, self.job_names = {}, {}
        placements = {p.name: p for p in args.placements}
        for dep in spec.models:
            target = args.targets.get(dep.name) or ModelTarget(namespace=dep.name, service=dep.name)
            plan = gate_plan(dep, placements[dep.name], catalog=catalog, code_digest=code.digest)
            self.plans[dep.name] = plan
            self.job_names[dep.name] = plan.job_name
            rbac = self._rollout_reader(name, dep.name, target, namespace, common)
            self._job(name, plan, target, namespace, common, image, air_gapped, args, [*deps, *rbac])
        self.register_outputs({"namespace": namespace, "jobs": self.job_names})

    # ------------------------------------------------------------------ pieces

    def _network_policies(self, name: str, spec: DeploymentSpec, namespace: pulumi.Input[str],
                          common: dict[str, str], air_gapped: bool) -> list[pulumi.Resource]:
        np = k8s.networking.v1
        child = pulumi.ResourceOptions(parent=self)

        def meta(n: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=n, namespace=namespace, labels=common)

        deny = np.NetworkPolicy(f"{name}-default-deny", metadata=meta("default-deny"),
                                spec=np.NetworkPolicySpecArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                                                              policy_types=["Ingress", "Egress"]), opts=child)
        egress = [
            np.NetworkPolicyEgressRuleArgs(
                to=[np.NetworkPolicyPeerArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                        match_labels={"kubernetes.io/metadata.name": "kube-system"}),
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}))],
                ports=[np.NetworkPolicyPortArgs(protocol="UDP", port=53),
                       np.NetworkPolicyPortArgs(protocol="TCP", port=53)]),
            np.NetworkPolicyEgressRuleArgs(
                to=[np.NetworkPolicyPeerArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(
                            key="kubernetes.io/metadata.name", operator="In",
                            values=[md.name for md in spec.models])]),
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app.kubernetes.io/name": "vllm"}))],
                ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=VLLM_PORT)]),
            # pip from PyPI (NAT) or the wheelhouse from S3 (egress none), and the Kubernetes API.
            np.NetworkPolicyEgressRuleArgs(ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=443)]),
        ]
        if air_gapped:
            egress.append(np.NetworkPolicyEgressRuleArgs(
                to=[np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=POD_IDENTITY_AGENT))],
                ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=80)]))
        gate = np.NetworkPolicy(
            f"{name}-egress", metadata=meta("sla-gate-egress"),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"servekit.io/role": GATE_ROLE}),
                policy_types=["Egress"], egress=egress),
            opts=child)
        return [deny, gate]

    def _wheel_reader(self, name: str, args: SlaGateArgs, namespace: pulumi.Input[str]) -> pulumi.Resource:
        """Egress none: the gate's service account may read the wheelhouse prefix of the model store."""
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-wheels", description=f"servekit {args.spec.stack}: the SLA gate reads its wheelhouse",
            assume_role_policy=assume_role_policy("pods.eks.amazonaws.com", tag_session=True),
            tags=dict(args.tags), opts=child)
        aws.iam.RolePolicy(
            f"{name}-wheels", role=role.id,
            policy=pulumi.Output.from_input(args.wheel_bucket).apply(
                lambda b: wheel_read_policy(str(b), args.spec.region)),
            opts=child)
        return aws.eks.PodIdentityAssociation(
            f"{name}-wheels", cluster_name=args.cluster_name, namespace=namespace, service_account=GATE_ROLE,
            role_arn=role.arn, tags=dict(args.tags), opts=child)

    def _rollout_reader(self, name: str, model: str, target: ModelTarget, namespace: pulumi.Input[str],
                        common: dict[str, str]) -> list[pulumi.Resource]:
        """Read-only access to the model's one Deployment, for ``kubectl rollout status``."""
        child = pulumi.ResourceOptions(parent=self)
        meta = k8s.meta.v1.ObjectMetaArgs(name=f"{GATE_ROLE}-rollout", namespace=target.namespace, labels=common)
        role = k8s.rbac.v1.Role(
            f"{name}-{model}-rollout", metadata=meta,
            rules=[k8s.rbac.v1.PolicyRuleArgs(api_groups=["apps"], resources=["deployments"], resource_names=[model],
                                              verbs=["get", "list", "watch"])],
            opts=child)
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-{model}-rollout", metadata=meta,
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role",
                                             name=f"{GATE_ROLE}-rollout"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=GATE_ROLE, namespace=namespace)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[role]))
        return [role, binding]

    def _job(self, name: str, plan: GatePlan, target: ModelTarget, namespace: pulumi.Input[str],
             common: dict[str, str], image: Any, air_gapped: bool, args: SlaGateArgs,
             deps: Sequence[pulumi.Resource]) -> k8s.batch.v1.Job:
        c = k8s.core.v1
        code = gate_code()
        security = c.SecurityContextArgs(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                         privileged=False, run_as_non_root=True, run_as_user=UID, run_as_group=UID,
                                         capabilities=c.CapabilitiesArgs(drop=["ALL"]))

        def resources(cpu_m: int, mem_mi: int, cpu_limit_m: int | None = None) -> c.ResourceRequirementsArgs:
            return c.ResourceRequirementsArgs(
                requests={"cpu": f"{cpu_m}m", "memory": f"{mem_mi}Mi", "ephemeral-storage": "256Mi"},
                limits={"cpu": f"{cpu_limit_m or cpu_m}m", "memory": f"{mem_mi}Mi", "ephemeral-storage": "512Mi"})

        tmp = c.VolumeMountArgs(name="tmp", mount_path=TMP_DIR)
        src = c.VolumeMountArgs(name="src", mount_path=SRC_DIR, read_only=True)
        home = [c.EnvVarArgs(name="HOME", value=TMP_DIR)]
        inits: list[c.ContainerArgs] = []
        if air_gapped:
            inits.append(c.ContainerArgs(
                name="fetch-wheels", image=image(AWS_CLI_IMAGE),
                command=["aws"],
                args=pulumi.Output.from_input(args.wheel_bucket).apply(lambda b: [
                    "s3", "sync", f"s3://{b}/{WHEELHOUSE_PREFIX}/", WHEELS_DIR, "--no-progress", "--only-show-errors"]),
                env=[*home, c.EnvVarArgs(name="AWS_REGION", value=args.spec.region),
                     c.EnvVarArgs(name="AWS_DEFAULT_REGION", value=args.spec.region)],
                resources=resources(200, 256), security_context=security,
                volume_mounts=[tmp, c.VolumeMountArgs(name="wheels", mount_path=WHEELS_DIR)]))
        source = (["--no-index", "--find-links", WHEELS_DIR] if air_gapped else ["--index-url", PYPI_INDEX])
        inits.append(c.ContainerArgs(
            name="install-deps", image=image(LOCUST_IMAGE),
            command=["python", "-m", "pip"],
            args=["install", "--no-cache-dir", "--disable-pip-version-check", "--only-binary=:all:", "--no-deps",
                  "--target", DEPS_DIR, *source, "-r", f"{SRC_DIR}/requirements.txt"],
            env=home, resources=resources(500, 512), security_context=security,
            volume_mounts=[tmp, src, c.VolumeMountArgs(name="deps", mount_path=DEPS_DIR),
                           *([c.VolumeMountArgs(name="wheels", mount_path=WHEELS_DIR, read_only=True)]
                             if air_gapped else [])]))
        inits.append(c.ContainerArgs(
            name="wait-rollout", image=image(KUBECTL_IMAGES[args.spec.cluster.version]),
            command=["kubectl"],
            args=pulumi.Output.from_input(target.namespace).apply(lambda ns: [
                "rollout", "status", f"deployment/{plan.model}", "--namespace", str(ns),
                f"--timeout={plan.rollout_timeout_seconds}s"]),
            env=home, resources=resources(100, 128), security_context=security,
            volume_mounts=[tmp, c.VolumeMountArgs(name="api-token", mount_path=TOKEN_DIR, read_only=True)]))

        env = [c.EnvVarArgs(name="SERVEKIT_ENDPOINT", value=pulumi.Output.all(target.service, target.namespace).apply(
            lambda v: endpoint(str(v[0]), str(v[1]), target.port)))]
        env += [c.EnvVarArgs(name=k, value=v) for k, v in plan.env.items()]
        if target.served_model_name and target.served_model_name != plan.model:
            env = [e if e.name != "SERVEKIT_MODEL" else c.EnvVarArgs(name="SERVEKIT_MODEL",
                                                                     value=target.served_model_name) for e in env]
        env += [*home,
                c.EnvVarArgs(name="PYTHONPATH", value=f"{SRC_DIR}:{DEPS_DIR}"),
                c.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
                c.EnvVarArgs(name="PYTHONUNBUFFERED", value="1")]
        gate = c.ContainerArgs(
            name="gate", image=image(LOCUST_IMAGE), command=["python", "-m", "loadtests.gate"], env=env,
            resources=resources(plan.cpu_millicores, plan.memory_mib, cpu_limit_m=plan.cpu_millicores + 1000),
            security_context=security,
            volume_mounts=[tmp, src, c.VolumeMountArgs(name="deps", mount_path=DEPS_DIR, read_only=True)])

        volumes = [
            c.VolumeArgs(name="tmp", empty_dir=c.EmptyDirVolumeSourceArgs(size_limit="256Mi")),
            c.VolumeArgs(name="deps", empty_dir=c.EmptyDirVolumeSourceArgs(size_limit="256Mi")),
            c.VolumeArgs(name="src", config_map=c.ConfigMapVolumeSourceArgs(
                name="sla-gate-code",
                items=[c.KeyToPathArgs(key=config_key(p), path=p) for p in sorted(code.files)]
                + [c.KeyToPathArgs(key="requirements.txt", path="requirements.txt")])),
            # The rollout waiter's credentials only: a short-lived token, the cluster CA and the namespace.
            c.VolumeArgs(name="api-token", projected=c.ProjectedVolumeSourceArgs(sources=[
                c.VolumeProjectionArgs(service_account_token=c.ServiceAccountTokenProjectionArgs(
                    path="token", expiration_seconds=3600)),
                c.VolumeProjectionArgs(config_map=c.ConfigMapProjectionArgs(
                    name="kube-root-ca.crt", items=[c.KeyToPathArgs(key="ca.crt", path="ca.crt")])),
                c.VolumeProjectionArgs(downward_api=c.DownwardAPIProjectionArgs(items=[
                    c.DownwardAPIVolumeFileArgs(path="namespace",
                                                field_ref=c.ObjectFieldSelectorArgs(field_path="metadata.namespace"))])),
            ])),
        ]
        if air_gapped:
            volumes.append(c.VolumeArgs(name="wheels", empty_dir=c.EmptyDirVolumeSourceArgs(size_limit="256Mi")))

        labels = {**common, "servekit.io/role": GATE_ROLE, "servekit.io/model": plan.model}
        annotations = {
            "pulumi.com/timeoutSeconds": str(plan.await_seconds),
            "servekit.io/fingerprint": plan.fingerprint,
            "servekit.io/sla-p95-seconds": plan.env["SERVEKIT_P95_SECONDS"],
            "servekit.io/concurrency": str(plan.concurrency),
        }
        return k8s.batch.v1.Job(
            f"{name}-{plan.model}",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=plan.job_name, namespace=namespace, labels=labels,
                                                annotations=annotations),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=0,
                active_deadline_seconds=plan.deadline_seconds,
                ttl_seconds_after_finished=86400,
                template=c.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=c.PodSpecArgs(
                        service_account_name=GATE_ROLE,
                        automount_service_account_token=False,
                        enable_service_links=False,
                        restart_policy="Never",
                        node_selector=dict(SYSTEM_NODE_SELECTOR),
                        security_context=c.PodSecurityContextArgs(
                            run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
                            seccomp_profile=c.SeccompProfileArgs(type="RuntimeDefault")),
                        init_containers=inits,
                        containers=[gate],
                        volumes=volumes,
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=list(deps),
                custom_timeouts=pulumi.CustomTimeouts(create=f"{plan.await_seconds}s",
                                                      update=f"{plan.await_seconds}s")),
        )


def wheel_read_policy(bucket: str, region: str) -> str:
    """List and get under the wheelhouse prefix only; decrypt only through S3."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "List", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": [f"{WHEELHOUSE_PREFIX}/*"]}}},
        {"Sid": "Get", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": f"arn:aws:s3:::{bucket}/{WHEELHOUSE_PREFIX}/*"},
        {"Sid": "DecryptViaS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ]}, sort_keys=True)


# --------------------------------------------------------------------------- platform extension


def attach(ctx: PlatformContext) -> dict[str, Any] | None:
    """components.platform extension: the gate Jobs, when ``slaGate`` is true (after the serving side)."""
    spec = ctx.spec
    if not spec.sla_gate:
        return None
    models = ctx.outputs.get("models") or {}
    targets = {
        name: ModelTarget(namespace=m["namespace"], service=m["service"], port=int(m.get("port", VLLM_PORT)),
                          served_model_name=m.get("servedModelName"))
        for name, m in models.items() if isinstance(m, dict) and "namespace" in m and "service" in m
    }
    air_gapped = spec.network.egress is Egress.NONE
    gate = SlaGate("sla-gate", SlaGateArgs(
        spec=spec, placements=ctx.placements, targets=targets, cluster_name=ctx.cluster.name, tags=dict(ctx.tags),
        mirror_registry=ctx.outputs.get("imageRegistry") if air_gapped else None,
        wheel_bucket=ctx.outputs.get("modelStoreBucket") if air_gapped else None,
        depends_on=[ctx.cluster.system_node_group],
    ), ctx.k8s_opts())
    return {"slaGate": {
        model: {"namespace": GATE_NAMESPACE, "job": job, "logs": f"kubectl logs -n {GATE_NAMESPACE} job/{job}"}
        for model, job in gate.job_names.items()}}
