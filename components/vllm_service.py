"""One served model: namespace, identity, vLLM Deployment, Service, PDB, NetworkPolicies, scaling.

Everything here reads the Placement (servekit/sizing.py) and never re-derives sizing; vLLM's
flags come only from ``servekit.engine_args.engine_args``.

Decisions, with the numbers they rest on
----------------------------------------

**Loading weights from S3: Run:ai Model Streamer** (``--load-format runai_streamer`` with an
``s3://`` model path; ``runai_streamer`` is in the pinned vLLM 0.33.0's ``--load-format`` choices,
servekit/data/vllm-flags.json). vLLM pulls config and tokenizer files first, then streams the
safetensors from S3 into GPU memory with concurrent range reads. Chosen over an init container
that copies to disk because (1) the weights never touch the node's disk, so the cache volume stays
small and a 140 GB model does not need 140 GB of ephemeral storage per replica, (2) download and
load overlap instead of running back to back, and (3) there is no second image or tool to mirror
into ECR. Credentials are the pod's EKS Pod Identity role (read-only, one prefix of the store);
the streamer's AWS SDK reads them from the container-credentials endpoint the agent injects.
The streamer's host buffer is capped with ``RUNAI_STREAMER_MEMORY_LIMIT`` (a quarter of the pod's
memory request) so it cannot grow to the model's size.

**Startup probe budget.** A start is image pull (not probed), then weight download + load, then
engine init (torch.compile, CUDA-graph capture, KV profiling). Assumed load throughput per pod:
``LOAD_GBPS`` = 0.25 GB/s from the Hugging Face hub, 1.0 GB/s from S3 through the gateway
endpoint, each capped at 80 % of the instance's network line rate; engine init
``ENGINE_INIT_SECONDS`` = 600 s. Budget = init + 1.5 x (weights / throughput). Llama 3.1 70B bf16
(141 GB) from the hub on p4de: 600 + 1.5 x 564 = 1446 s, so ``failureThreshold`` 145 at 10 s.
``progressDeadlineSeconds`` adds 900 s for the image pull (~10 GB vLLM image) and 300 s for LoRA
adapters; Pulumi's await (``pulumi.com/timeoutSeconds``) adds another 600 s for a GPU node to join,
so ``pulumi up`` waits out a long first load instead of failing at its 10-minute default.

**CPU and memory requests** are the node's share: (node - system reserve) / replicas that fit on a
node (floor(GPUs / TP)), limits equal to requests (Guaranteed QoS, no throttling surprises).
System reserve, stated: CPU 1 vCPU + 2.5 % of the node (kubelet/containerd on AL2023 reserve about
6/1/0.5/0.25 % of cores 1/2/3-4/5+, plus the DaemonSets: vpc-cni, kube-proxy, Pod Identity agent,
NVIDIA device plugin, node/DCGM exporters); memory 3 GiB + 3 % of the node (kube-reserved
255 MiB + 11 MiB per pod at 110 pods, the 100 MiB eviction threshold, the DaemonSets).

**/dev/shm** is a memory-backed emptyDir on every pod (single-GPU too: vLLM's V1 engine passes
messages between processes through shared memory), 2 GiB per GPU of the replica, at most 16 GiB.
It counts against the memory limit, which already includes it.

**Non-root: not enforced.** ``vllm/vllm-openai`` has no USER directive (it runs as root), and an
arbitrary non-root UID breaks torch's ``getpass.getuser()`` at import (kserve#5666); the non-root
variant added upstream (vllm#40275) is an opt-in build target, not the published tag. So
``runAsNonRoot`` stays unset and the namespace enforces Pod Security "baseline"; the container
still drops every capability, forbids privilege escalation, uses the RuntimeDefault seccomp
profile and gets no Kubernetes API token.

**Rolling update** is maxUnavailable 0 / maxSurge 1: a new pod must be Ready before an old one
goes, so serving capacity never drops below the replica count. It needs room for one extra
replica: TP free GPUs plus one replica's CPU/memory share on some node of the pool. Where nodes
hold a single replica (1-GPU instances, or TP = GPUs per node) that means the node group's
maximum must allow one node above the steady count; otherwise the rollout waits.

**Draining.** On termination the pod leaves the Service's endpoints at once; a ``preStop`` sleep of
10 s (endpoint propagation) + 2 x the SLA's p95 keeps the server answering requests already
accepted before SIGTERM, and ``terminationGracePeriodSeconds`` adds 30 s for the process to exit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.autoscaling import KEDA_IMAGES, Keda, KedaArgs, scaled_object_spec
from components.image_mirror import UPSTREAMS, ImageMirror, ImageMirrorArgs
from components.model_store import ModelStore, ModelStoreArgs, read_policy, store_prefix
from components.restart import KUBECTL_IMAGES, PreventiveRestart, PreventiveRestartArgs
from servekit import adapter_fetch
from servekit.catalog import Catalog, default_catalog
from servekit.engine_args import VLLM_PORT, engine_args
from servekit.errors import UserError
from servekit.sizing import GIB, Placement
from servekit.spec import DeploymentSpec, Egress, InstanceSpec, ModelDeployment, ModelSource, ModelSpec
from servekit.vllm_flags import VLLM_IMAGE, VLLM_VERSION

if TYPE_CHECKING:
    from components.platform import PlatformContext

LOAD_GBPS = {ModelSource.HF: 0.25, ModelSource.S3: 1.0}  # GB/s per pod, assumed (module docstring)
NETWORK_USABLE = 0.8  # share of the instance's line rate one download can use
ENGINE_INIT_SECONDS = 600
LOAD_SAFETY = 1.5
PROBE_PERIOD = 10
IMAGE_PULL_SECONDS = 900
ADAPTER_FETCH_SECONDS = 300
NODE_JOIN_SECONDS = 600
ENDPOINT_PROPAGATION_SECONDS = 10
EXIT_SECONDS = 30
RESERVE_CPU = (1.0, 0.025)  # vCPU: fixed + fraction of the node
RESERVE_MEMORY_GIB = (3.0, 0.03)  # GiB: fixed + fraction of the node
SHM_GIB_PER_GPU, SHM_MAX_GIB = 2, 16
CACHE_BASE_GIB = 10  # tokenizer/config, torch.compile and Triton caches
ADAPTER_GIB = 2
GPU_TAINT_KEY = "nvidia.com/gpu"
POD_IDENTITY_AGENT = "169.254.170.23/32"  # EKS Pod Identity agent (link-local, port 80)
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"]
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


# --------------------------------------------------------------------------- pure sizing of the pod


@dataclass(frozen=True)
class PodBudget:
    cpu_millicores: int
    memory_mib: int
    shm_mib: int
    cache_gib: int
    ephemeral_gib: int
    load_gbps: float
    startup_seconds: int
    startup_failure_threshold: int
    progress_deadline_seconds: int
    await_timeout_seconds: int
    drain_seconds: int
    termination_grace_seconds: int
    streamer_memory_limit_bytes: int


def node_share(instance: InstanceSpec, replicas_per_node: int) -> tuple[int, int]:
    """(millicores, MiB) one replica may request: (node - system reserve) / replicas per node."""
    cpu = instance.vcpu - (RESERVE_CPU[0] + RESERVE_CPU[1] * instance.vcpu)
    mem_gib = instance.memory_gib - (RESERVE_MEMORY_GIB[0] + RESERVE_MEMORY_GIB[1] * instance.memory_gib)
    n = max(1, replicas_per_node)
    return math.floor(cpu * 1000 / n / 100) * 100, math.floor(mem_gib * 1024 / n)


def load_throughput_gbps(source: ModelSource, instance: InstanceSpec) -> float:
    return min(LOAD_GBPS[source], instance.network_gbps / 8 * NETWORK_USABLE)


def pod_budget(placement: Placement, deployment: ModelDeployment, instance: InstanceSpec) -> PodBudget:
    cpu_m, mem_mib = node_share(instance, placement.replicas_per_node)
    shm_gib = min(SHM_MAX_GIB, SHM_GIB_PER_GPU * placement.tensor_parallel_size)
    shm_mib = min(shm_gib * 1024, mem_mib // 4)
    weights_gb = placement.weights_gib * GIB / 1e9
    gbps = load_throughput_gbps(deployment.source, instance)
    startup = math.ceil(ENGINE_INIT_SECONDS + LOAD_SAFETY * weights_gb / gbps)
    threshold = math.ceil(startup / PROBE_PERIOD)
    on_disk = math.ceil(placement.weights_gib * 1.05) if deployment.source is ModelSource.HF else 0
    cache = CACHE_BASE_GIB + on_disk
    adapters = ADAPTER_GIB * len(deployment.lora_adapters)
    progress = IMAGE_PULL_SECONDS + (ADAPTER_FETCH_SECONDS if adapters else 0) + threshold * PROBE_PERIOD
    drain = ENDPOINT_PROPAGATION_SECONDS + max(20, math.ceil(2 * deployment.sla.p95_e2e_seconds))
    return PodBudget(
        cpu_millicores=cpu_m,
        memory_mib=mem_mib,
        shm_mib=shm_mib,
        cache_gib=cache,
        ephemeral_gib=cache + adapters + 2,  # + container logs and writable layer
        load_gbps=gbps,
        startup_seconds=startup,
        startup_failure_threshold=threshold,
        progress_deadline_seconds=progress,
        await_timeout_seconds=progress + NODE_JOIN_SECONDS,
        drain_seconds=drain,
        termination_grace_seconds=drain + EXIT_SECONDS,
        streamer_memory_limit_bytes=min(math.ceil(placement.weights_gib * GIB), mem_mib * 1024**2 // 4),
    )


def label_value(value: str) -> str:
    """A Kubernetes label value (63 chars of [A-Za-z0-9._-], alphanumeric at both ends)."""
    v = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-_.")
    assert LABEL_VALUE.fullmatch(v), v
    return v


def serving_labels(placement: Placement, deployment: ModelDeployment, model: ModelSpec,
                   spec: DeploymentSpec) -> dict[str, str]:
    """The facts the policy pack reads from every serving Deployment and pod."""
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": deployment.name,
        "app.kubernetes.io/version": label_value(f"v{VLLM_VERSION}"),
        "app.kubernetes.io/part-of": "servekit",
        "servekit.io/role": "serving",
        "servekit.io/model": label_value(model.id),
        "servekit.io/license": label_value(model.license.id),
        "servekit.io/commercial-use": "true" if model.license.commercial_use else "false",
        "servekit.io/data-classification": spec.tags.data_classification.value,
        "servekit.io/sla-p95-seconds": label_value(f"{deployment.sla.p95_e2e_seconds:g}"),
    }


def selector_labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}


def needs_hf_token(deployment: ModelDeployment, model: ModelSpec) -> bool:
    """The hub refuses a gated model's files without a token of an account that accepted its licence."""
    return deployment.source is ModelSource.HF and model.gated


# --------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class VllmServiceArgs:
    placement: Placement
    deployment: ModelDeployment
    model: ModelSpec
    instance: InstanceSpec
    spec: DeploymentSpec
    cluster_name: pulumi.Input[str]
    hf_token: pulumi.Input[str] | None = None  # a Pulumi secret (servekit:hfToken)
    model_store: ModelStore | None = None
    mirror: ImageMirror | None = None  # egress none: every image through ECR pull-through caches
    keda: Keda | None = None  # required when the model autoscales
    prometheus_address: str | None = None  # KEDA's Prometheus trigger server address
    monitoring_namespace: str = "monitoring"  # allowed to scrape /metrics
    tags: dict[str, str] | None = None  # AWS tags for the pod role


class VllmService(pulumi.ComponentResource):
    namespace: pulumi.Output[str]
    service_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    budget: PodBudget

    def __init__(self, name: str, args: VllmServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:vllm_service:VllmService", name, {}, opts)
        p, dep, model, spec = args.placement, args.deployment, args.model, args.spec
        where = f"config.servekit:models[{spec.models.index(dep)}]." if dep in spec.models else ""
        self._check(args, where)
        child = pulumi.ResourceOptions(parent=self)
        app = dep.name
        budget = self.budget = pod_budget(p, dep, args.instance)
        labels = serving_labels(p, dep, model, spec)
        common = {k: v for k, v in labels.items() if k != "servekit.io/role"}

        def image(ref: str) -> pulumi.Input[str]:
            return args.mirror.reference(ref) if args.mirror is not None else ref

        # ---- namespace and identity
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app, labels={
                **common,
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            }),
            opts=child,
        )
        namespace = ns.metadata.name
        sa = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app, namespace=namespace, labels=common),
            automount_service_account_token=False,
            opts=child,
        )
        pod_deps: list[pulumi.Resource] = [sa]
        s3_adapters = [a for a in dep.lora_adapters if a.source.startswith("s3://")]
        uses_aws = dep.source is ModelSource.S3 or bool(s3_adapters)
        if uses_aws:
            pod_deps.append(self._pod_identity(name, args, namespace, app))

        # ---- hub token (a Secret only when something needs it)
        env_token: list[k8s.core.v1.EnvVarArgs] = []
        token_ref = [k8s.core.v1.EnvVarArgs(
            name="HF_TOKEN", value_from=k8s.core.v1.EnvVarSourceArgs(
                secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name="hf-token", key="token")))]
        hub_adapters = any(a.source.startswith("hf://") for a in dep.lora_adapters)
        self.warnings: list[str] = []
        if needs_hf_token(dep, model) and args.hf_token is None:
            # Not an error: the offline plan has no token, and an operator may create the Secret
            # out of band (kubectl create secret generic hf-token -n <model> --from-literal=token=...)
            # so the token never enters Pulumi state. Until one exists the pod waits in
            # CreateContainerConfigError naming the missing Secret.
            self.warnings.append(
                f"{dep.name}: {model.id} is gated on the Hugging Face hub and no token is configured; set "
                "`pulumi config set --secret servekit:hfToken <token>` or create Secret hf-token (key token) "
                f"in namespace {dep.name}, or load it from the model store (source: s3)")
            pulumi.log.warn(self.warnings[-1], resource=self)
            env_token = token_ref
        elif args.hf_token is not None and (needs_hf_token(dep, model) or hub_adapters):
            secret = k8s.core.v1.Secret(
                f"{name}-hf-token",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="hf-token", namespace=namespace, labels=common),
                type="Opaque",
                string_data={"token": pulumi.Output.secret(args.hf_token)},
                opts=child,
            )
            pod_deps.append(secret)
            env_token = token_ref

        # ---- engine arguments (validated now with a placeholder bucket; the real one when known)
        lora_paths = {a.name: f"/adapters/{a.name}" for a in dep.lora_adapters}
        load_format = "runai_streamer" if dep.source is ModelSource.S3 else None
        prefix = store_prefix(p, model)
        checked = engine_args(p, dep, model, model_path=f"s3://model-store/{prefix}/" if load_format else None,
                              load_format=load_format, lora_paths=lora_paths or None, origin=where)
        container_args: pulumi.Input[list[str]]
        if dep.source is ModelSource.S3:
            assert args.model_store is not None  # _check
            container_args = args.model_store.bucket_name.apply(lambda b: engine_args(
                p, dep, model, model_path=f"s3://{b}/{prefix}/", load_format=load_format,
                lora_paths=lora_paths or None, origin=where))
        else:
            container_args = checked

        # ---- the pod
        vllm_image = image(VLLM_IMAGE)
        env = self._env(args, budget) + env_token
        volumes = [
            k8s.core.v1.VolumeArgs(name="dshm", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                medium="Memory", size_limit=f"{budget.shm_mib}Mi")),
            k8s.core.v1.VolumeArgs(name="cache", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                size_limit=f"{budget.cache_gib}Gi")),
        ]
        mounts = [k8s.core.v1.VolumeMountArgs(name="dshm", mount_path="/dev/shm"),
                  k8s.core.v1.VolumeMountArgs(name="cache", mount_path="/models")]
        init_containers: list[k8s.core.v1.ContainerArgs] = []
        if dep.lora_adapters:
            script = k8s.core.v1.ConfigMap(
                f"{name}-adapter-fetch",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="adapter-fetch", namespace=namespace, labels=common),
                data={"adapter_fetch.py": Path(adapter_fetch.__file__).read_text(encoding="utf-8")},
                opts=child,
            )
            pod_deps.append(script)
            volumes += [
                k8s.core.v1.VolumeArgs(name="adapters", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(
                    size_limit=f"{ADAPTER_GIB * len(dep.lora_adapters)}Gi")),
                k8s.core.v1.VolumeArgs(name="adapter-fetch", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(
                    name="adapter-fetch")),
            ]
            mounts.append(k8s.core.v1.VolumeMountArgs(name="adapters", mount_path="/adapters", read_only=True))
            init_containers.append(k8s.core.v1.ContainerArgs(
                name="fetch-adapters",
                image=vllm_image,
                command=["python3", "/opt/servekit/adapter_fetch.py"],
                args=["--dest", "/adapters", *(f"{a.name}={a.source}" for a in dep.lora_adapters)],
                env=[e for e in env if e.name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_STS_REGIONAL_ENDPOINTS",
                                                  "HF_HUB_DISABLE_TELEMETRY", "HF_HOME")] + env_token,
                resources=k8s.core.v1.ResourceRequirementsArgs(
                    requests={"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"},
                    limits={"cpu": "1", "memory": "2Gi", "ephemeral-storage": "1Gi"}),
                security_context=_container_security(),
                volume_mounts=[k8s.core.v1.VolumeMountArgs(name="adapters", mount_path="/adapters"),
                               k8s.core.v1.VolumeMountArgs(name="adapter-fetch", mount_path="/opt/servekit",
                                                           read_only=True),
                               k8s.core.v1.VolumeMountArgs(name="cache", mount_path="/models")],
            ))

        resources = {
            "cpu": f"{budget.cpu_millicores}m",
            "memory": f"{budget.memory_mib}Mi",
            "ephemeral-storage": f"{budget.ephemeral_gib}Gi",
            "nvidia.com/gpu": str(p.tensor_parallel_size),
        }
        health = k8s.core.v1.HTTPGetActionArgs(path="/health", port="http")
        container = k8s.core.v1.ContainerArgs(
            name="vllm",
            image=vllm_image,
            image_pull_policy="IfNotPresent",
            args=container_args,
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=VLLM_PORT, protocol="TCP")],
            env=env,
            resources=k8s.core.v1.ResourceRequirementsArgs(requests=resources, limits=resources),
            startup_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=PROBE_PERIOD, timeout_seconds=5,
                                                failure_threshold=budget.startup_failure_threshold),
            readiness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=10, timeout_seconds=5,
                                                  failure_threshold=3, success_threshold=1),
            liveness_probe=k8s.core.v1.ProbeArgs(http_get=health, period_seconds=30, timeout_seconds=10,
                                                 failure_threshold=5),
            lifecycle=k8s.core.v1.LifecycleArgs(pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                sleep=k8s.core.v1.SleepActionArgs(seconds=budget.drain_seconds))),
            security_context=_container_security(),
            volume_mounts=mounts,
        )
        pod_labels = {**labels, **selector_labels(app)}
        single_az = dep.purchase.availability_zone is not None
        spread_zones = dep.spread_across_zones and not single_az and dep.max_replicas > 1
        pod_spec = k8s.core.v1.PodSpecArgs(
            service_account_name=app,
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=budget.termination_grace_seconds,
            node_selector={"servekit.io/gpu": p.gpu_type, "node.kubernetes.io/instance-type": p.instance_type},
            tolerations=[k8s.core.v1.TolerationArgs(key=GPU_TAINT_KEY, operator="Exists", effect="NoSchedule")],
            topology_spread_constraints=[
                k8s.core.v1.TopologySpreadConstraintArgs(
                    max_skew=1, topology_key="topology.kubernetes.io/zone",
                    when_unsatisfiable="DoNotSchedule" if spread_zones else "ScheduleAnyway",
                    label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(app))),
                k8s.core.v1.TopologySpreadConstraintArgs(
                    max_skew=1, topology_key="kubernetes.io/hostname", when_unsatisfiable="ScheduleAnyway",
                    label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(app))),
            ],
            security_context=k8s.core.v1.PodSecurityContextArgs(
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
            init_containers=init_containers or None,
            containers=[container],
            volumes=volumes,
        )
        annotations = {
            "pulumi.com/timeoutSeconds": str(budget.await_timeout_seconds),
            "servekit.io/license-name": model.license.name,
            "servekit.io/hf-repo": p.hf_repo,
            "servekit.io/instance-type": p.instance_type,
            "servekit.io/tensor-parallel-size": str(p.tensor_parallel_size),
            "servekit.io/sla-concurrency-per-replica": str(dep.sla.concurrency_per_replica),
            "servekit.io/predicted-p95-seconds": f"{p.predicted_p95_seconds:.2f}",
            "servekit.io/startup-budget-seconds": str(budget.startup_seconds),
            "servekit.io/load-throughput-gbps": f"{budget.load_gbps:g}",
            "servekit.io/weights-source": dep.source.value,
        }
        autoscaled = dep.autoscaling is not None
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app, namespace=namespace, labels=labels,
                                                annotations=annotations),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=p.replicas,
                revision_history_limit=3,
                progress_deadline_seconds=budget.progress_deadline_seconds,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(app)),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1)),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels, annotations={
                        k: v for k, v in annotations.items() if not k.startswith("pulumi.com/")}),
                    spec=pod_spec),
            ),
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=pod_deps,
                # KEDA owns the replica count of an autoscaled model; Pulumi must not reset it.
                ignore_changes=["spec.replicas"] if autoscaled else None,
                custom_timeouts=pulumi.CustomTimeouts(create=f"{budget.await_timeout_seconds}s",
                                                      update=f"{budget.await_timeout_seconds}s"),
            ),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app, namespace=namespace, labels=common),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector_labels(app),
                ports=[k8s.core.v1.ServicePortArgs(name="http", port=VLLM_PORT, target_port="http", protocol="TCP")]),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=app, namespace=namespace, labels=common),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(app)),
                unhealthy_pod_eviction_policy="AlwaysAllow"),
            opts=child,
        )
        self._network_policies(name, args, namespace, app, common, uses_aws)

        if dep.autoscaling is not None:
            assert args.keda is not None and args.prometheus_address is not None  # _check
            k8s.apiextensions.CustomResource(
                f"{name}-scaledobject",
                api_version="keda.sh/v1alpha1",
                kind="ScaledObject",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=app, namespace=namespace, labels=common),
                spec=scaled_object_spec(
                    deployment_name=app, namespace=app, model_name=dep.name,
                    min_replicas=dep.autoscaling.min_replicas, max_replicas=dep.autoscaling.max_replicas,
                    waiting_target=dep.autoscaling.waiting_requests_target,
                    prometheus_address=args.prometheus_address),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[args.keda.release, deployment]),
            )
        if dep.restart_every_hours is not None:
            PreventiveRestart(
                f"{name}-restart",
                PreventiveRestartArgs(namespace=namespace, deployment_name=app, every_hours=dep.restart_every_hours,
                                      kubectl_image=image(KUBECTL_IMAGES[spec.cluster.version]), labels=common),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[deployment]),
            )

        self.namespace = namespace
        self.service_name = service.metadata.name
        self.endpoint = pulumi.Output.concat("http://", service.metadata.name, ".", namespace, ".svc:",
                                             str(VLLM_PORT), "/v1")
        self.register_outputs({"namespace": self.namespace, "serviceName": self.service_name,
                               "endpoint": self.endpoint})

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check(args: VllmServiceArgs, where: str) -> None:
        dep = args.deployment
        if dep.source is ModelSource.S3 and args.model_store is None:
            raise UserError("source s3 needs the model store (modelStore.enabled is false or no store was passed)",
                            path=f"{where}source", given="s3")
        if dep.autoscaling is not None and (args.keda is None or not args.prometheus_address):
            raise UserError("autoscaling needs KEDA and a Prometheus address (the monitoring component)",
                            path=f"{where}autoscaling")
        if args.spec.network.egress is Egress.NONE and args.mirror is None:
            raise UserError("network.egress is none, so images must come through the ECR mirror (none passed)",
                            path="config.servekit:network.egress")
        if args.instance.type != args.placement.instance_type:
            raise ValueError(f"instance {args.instance.type} is not the placement's {args.placement.instance_type}")

    def _pod_identity(self, name: str, args: VllmServiceArgs, namespace: pulumi.Input[str],
                      app: str) -> aws.eks.PodIdentityAssociation:
        """An IAM role only this ServiceAccount can assume, reading only what this model loads."""
        child = pulumi.ResourceOptions(parent=self)
        dep = args.deployment
        tags = {**(args.tags or {}), "servekit:model": dep.name}
        role = aws.iam.Role(
            f"{name}-pod-role",
            description=f"servekit {args.spec.stack}: vLLM pods of {dep.name} (read-only weights and adapters)",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"]}]}),
            tags=tags, opts=child,
        )
        if dep.source is ModelSource.S3:
            assert args.model_store is not None
            prefix = store_prefix(args.placement, args.model)
            aws.iam.RolePolicy(
                f"{name}-read-weights", role=role.name,
                policy=pulumi.Output.all(args.model_store.bucket_arn, args.model_store.kms_key_arn).apply(
                    lambda a: read_policy(a[0], a[1], [f"{prefix}/"])),
                opts=pulumi.ResourceOptions(parent=role),
            )
        s3_adapters = [a.source.removeprefix("s3://") for a in dep.lora_adapters if a.source.startswith("s3://")]
        if s3_adapters:
            aws.iam.RolePolicy(
                f"{name}-read-adapters", role=role.name, policy=adapter_read_policy(s3_adapters, args.spec.region),
                opts=pulumi.ResourceOptions(parent=role),
            )
        return aws.eks.PodIdentityAssociation(
            f"{name}-pod-identity", cluster_name=args.cluster_name, namespace=namespace, service_account=app,
            role_arn=role.arn, tags=tags, opts=child,
        )

    @staticmethod
    def _env(args: VllmServiceArgs, budget: PodBudget) -> list[k8s.core.v1.EnvVarArgs]:
        region = args.spec.region
        env = {
            "HF_HOME": "/models/hf",
            "VLLM_CACHE_ROOT": "/models/vllm",
            "XDG_CACHE_HOME": "/models/cache",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        }
        if args.deployment.source is ModelSource.S3:
            env["HF_HUB_OFFLINE"] = "1"  # everything comes from the store; never wait on the hub
            env["RUNAI_STREAMER_MEMORY_LIMIT"] = str(budget.streamer_memory_limit_bytes)
        return [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()]

    def _network_policies(self, name: str, args: VllmServiceArgs, namespace: pulumi.Input[str], app: str,
                          labels: dict[str, str], uses_aws: bool) -> None:
        """Default deny; serving pods accept clients, the SLA gate and Prometheus; egress DNS + weights."""
        child = pulumi.ResourceOptions(parent=self)
        np = k8s.networking.v1

        def meta(n: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=n, namespace=namespace, labels=labels)

        def selector(match: dict[str, str]) -> k8s.meta.v1.LabelSelectorArgs:
            return k8s.meta.v1.LabelSelectorArgs(match_labels=match)

        http = [np.NetworkPolicyPortArgs(protocol="TCP", port=VLLM_PORT)]
        dns = np.NetworkPolicyEgressRuleArgs(
            to=[np.NetworkPolicyPeerArgs(namespace_selector=selector({"kubernetes.io/metadata.name": "kube-system"}),
                                         pod_selector=selector({"k8s-app": "kube-dns"}))],
            ports=[np.NetworkPolicyPortArgs(protocol="UDP", port=53),
                   np.NetworkPolicyPortArgs(protocol="TCP", port=53)],
        )
        np.NetworkPolicy(
            f"{name}-default-deny", metadata=meta("default-deny"),
            spec=np.NetworkPolicySpecArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(),  # every pod
                                          policy_types=["Ingress", "Egress"]),
            opts=child,
        )
        # Weights and adapters: S3 (gateway endpoint -> S3's public addresses) or the hub, both on 443.
        # NetworkPolicy cannot name the S3 prefix list, so the rule is "443 to non-private addresses";
        # with egress none the VPC routes nothing else, with NAT this is what the hub needs anyway.
        egress = [dns, np.NetworkPolicyEgressRuleArgs(
            to=[np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr="0.0.0.0/0", except_=PRIVATE_RANGES))],
            ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=443)])]
        if uses_aws:
            egress.append(np.NetworkPolicyEgressRuleArgs(
                to=[np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=POD_IDENTITY_AGENT))],
                ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=80)]))
        np.NetworkPolicy(
            f"{name}-serving", metadata=meta(f"{app}-serving"),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=selector(selector_labels(app)),
                policy_types=["Ingress", "Egress"],
                ingress=[np.NetworkPolicyIngressRuleArgs(
                    from_=[
                        np.NetworkPolicyPeerArgs(namespace_selector=selector({"servekit.io/client": "true"})),
                        np.NetworkPolicyPeerArgs(namespace_selector=k8s.meta.v1.LabelSelectorArgs(),
                                                 pod_selector=selector({"servekit.io/role": "sla-gate"})),
                        np.NetworkPolicyPeerArgs(namespace_selector=selector(
                            {"kubernetes.io/metadata.name": args.monitoring_namespace})),
                    ],
                    ports=http)],
                egress=egress,
            ),
            opts=child,
        )
        # An SLA gate Job run inside this namespace may reach the model (and DNS) despite default deny.
        np.NetworkPolicy(
            f"{name}-sla-gate", metadata=meta("sla-gate-egress"),
            spec=np.NetworkPolicySpecArgs(
                pod_selector=selector({"servekit.io/role": "sla-gate"}),
                policy_types=["Egress"],
                egress=[dns, np.NetworkPolicyEgressRuleArgs(
                    to=[np.NetworkPolicyPeerArgs(pod_selector=selector(selector_labels(app)))], ports=http)],
            ),
            opts=child,
        )


def _container_security() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        # runAsNonRoot deliberately unset: the image runs as root (module docstring).
    )


def adapter_read_policy(locations: list[str], region: str) -> str:
    """Read-only access to ``bucket/prefix`` locations (LoRA adapters), decrypting through S3 only."""
    statements: list[dict[str, object]] = []
    for i, loc in enumerate(sorted(set(locations))):
        bucket, _, prefix = loc.partition("/")
        prefix = prefix.strip("/")
        statements += [
            {"Sid": f"List{i}", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*" if prefix else "*"]}}},
            {"Sid": f"Get{i}", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": f"arn:aws:s3:::{bucket}/{prefix + '/' if prefix else ''}*"},
        ]
    statements.append({"Sid": "DecryptViaS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": "*",
                       "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


# --------------------------------------------------------------------------- all models of a stack

DEFAULT_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"  # Prometheus Operator's service


@dataclass(frozen=True)
class ServingArgs:
    spec: DeploymentSpec
    placements: Sequence[Placement]
    catalog: Catalog
    cluster_name: pulumi.Input[str]
    hf_token: pulumi.Input[str] | None = None
    node_role_name: pulumi.Input[str] | None = None  # gets ECR pull-through permissions (egress none)
    prometheus_address: str = DEFAULT_PROMETHEUS
    monitoring_namespace: str = "monitoring"
    system_node_selector: dict[str, str] | None = None
    tags: dict[str, str] | None = None


@dataclass
class Serving:
    services: dict[str, VllmService]
    model_store: ModelStore | None
    mirror: ImageMirror | None
    keda: Keda | None


def serving_images(spec: DeploymentSpec) -> list[str]:
    """Every upstream image the serving side pulls for this stack."""
    images = [VLLM_IMAGE]
    if any(m.restart_every_hours for m in spec.models):
        images.append(KUBECTL_IMAGES[spec.cluster.version])
    if any(m.autoscaling for m in spec.models):
        images += list(KEDA_IMAGES.values())
    return images


def deploy_models(args: ServingArgs, opts: pulumi.ResourceOptions | None = None) -> Serving:
    """Model store, image mirror and KEDA as the stack needs them, then one VllmService per placement."""
    spec, tags = args.spec, args.tags or {}
    store = None
    if spec.model_store.enabled and any(m.source is ModelSource.S3 for m in spec.models):
        store = ModelStore("models", ModelStoreArgs(stack=spec.stack, tags=tags), opts)
    mirror = None
    if spec.network.egress is Egress.NONE:
        # The credential-free upstreams come along so other components (monitoring, the SLA gate)
        # can rewrite their images with mirrored_reference() without a second set of rules.
        free = [f"{u.host}/servekit/probe:v0" for u in UPSTREAMS.values() if not u.needs_credentials]
        mirror = ImageMirror("images", ImageMirrorArgs(
            stack=spec.stack, images=serving_images(spec) + free, node_role_name=args.node_role_name, tags=tags),
            opts)
    keda = None
    if any(m.autoscaling for m in spec.models):
        keda = Keda("keda", KedaArgs(mirror=mirror, system_node_selector=args.system_node_selector), opts)
    services = {}
    for dep, placement in zip(spec.models, args.placements, strict=True):
        if dep.name != placement.name:
            raise ValueError(f"placements out of order: {placement.name} for {dep.name}")
        services[dep.name] = VllmService(dep.name, VllmServiceArgs(
            placement=placement, deployment=dep, model=args.catalog.model(dep.model),
            instance=args.catalog.instances[placement.instance_type], spec=spec, cluster_name=args.cluster_name,
            hf_token=args.hf_token, model_store=store, mirror=mirror, keda=keda,
            prometheus_address=args.prometheus_address, monitoring_namespace=args.monitoring_namespace, tags=tags,
        ), opts)
    return Serving(services=services, model_store=store, mirror=mirror, keda=keda)


def attach(ctx: PlatformContext) -> dict[str, Any]:
    """components.platform extension: the serving side of the stack on the cluster the platform built."""
    prometheus = ctx.outputs.get("prometheusAddress")
    serving = deploy_models(ServingArgs(
        spec=ctx.spec, placements=ctx.placements, catalog=default_catalog(), cluster_name=ctx.cluster.name,
        hf_token=ctx.hf_token, node_role_name=ctx.cluster.node_role_arn.apply(lambda arn: arn.rsplit("/", 1)[-1]),
        prometheus_address=prometheus if isinstance(prometheus, str) else DEFAULT_PROMETHEUS,
        tags=dict(ctx.tags),
    ), ctx.k8s_opts(depends_on=[ctx.cluster.system_node_group, *ctx.cluster.addons.values()]))
    sla = {m.name: m.sla for m in ctx.spec.models}
    out: dict[str, Any] = {"models": {
        name: {
            "namespace": svc.namespace, "service": svc.service_name, "port": VLLM_PORT, "endpoint": svc.endpoint,
            "servedModelName": name, "nodePools": [pool.name for pool in ctx.plan.pools_for(name)],
            "slaP95Seconds": sla[name].p95_e2e_seconds,
            "slaConcurrencyPerReplica": sla[name].concurrency_per_replica,
        } for name, svc in serving.services.items()
    }}
    if serving.model_store is not None:
        out["modelStoreBucket"] = serving.model_store.bucket_name
        out["modelStoreWritePolicyArn"] = serving.model_store.write_policy_arn
    if serving.mirror is not None:
        out["imageRegistry"] = serving.mirror.registry
        out["imageCredentialSecrets"] = serving.mirror.credential_secret_names
    return out
