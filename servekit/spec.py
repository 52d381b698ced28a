"""Typed, validated shapes for everything a user or a data file can say.

Every model here is frozen and forbids unknown keys, so a typo in a stack file or a
model file is an error that names the field, never a silently ignored setting. YAML
uses camelCase (``maxContext``); Python uses snake_case (``max_context``).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


def to_camel(name: str) -> str:
    """snake_case -> camelCase, capitalising only the first letter of each word (p95_e2e -> p95E2e)."""
    head, *rest = name.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


class Frozen(BaseModel):
    """Base for every user-facing or data-file model: camelCase keys, no extras, immutable."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_enum_values=False,
    )

    def to_json(self) -> dict[str, object]:
        """camelCase JSON-ready dict (the form every ``--json`` output uses)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- sources


class Source(Frozen):
    """Where an outside number came from, and when it was read."""

    url: str
    retrieved: date
    note: str | None = None


# --------------------------------------------------------------------------- quantization


class Quantization(StrEnum):
    """Weight formats the kit can size and pass to vLLM."""

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    INT8 = "int8"  # W8A8 int8 (compressed-tensors checkpoints)
    AWQ = "awq"  # int4, group size 128
    GPTQ = "gptq"  # int4, group size 128

    @property
    def is_int4(self) -> bool:
        return self in (Quantization.AWQ, Quantization.GPTQ)


class KvCacheDtype(StrEnum):
    AUTO = "auto"  # same as the activation dtype (bf16/fp16): 2 bytes
    FP8 = "fp8"  # 1 byte; vLLM accepts it on Ampere, Ada and Hopper


# --------------------------------------------------------------------------- catalog facts


class License(Frozen):
    id: str  # SPDX id where one exists, else the vendor's licence name slug
    name: str
    commercial_use: bool
    url: str


class Architecture(Frozen):
    """Facts from the model's HF ``config.json``."""

    num_layers: Annotated[int, Field(gt=0)]
    hidden_size: Annotated[int, Field(gt=0)]
    num_attention_heads: Annotated[int, Field(gt=0)]
    num_key_value_heads: Annotated[int, Field(gt=0)]
    head_dim: Annotated[int, Field(gt=0)]
    intermediate_size: Annotated[int, Field(gt=0)]
    vocab_size: Annotated[int, Field(gt=0)]
    max_position_embeddings: Annotated[int, Field(gt=0)]
    tie_word_embeddings: bool = False
    sliding_window: int | None = None  # tokens, for the layers that use a window
    sliding_window_layers: Annotated[int, Field(ge=0)] = 0
    num_experts: int | None = None
    experts_per_token: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"numAttentionHeads ({self.num_attention_heads}) must be a multiple of "
                f"numKeyValueHeads ({self.num_key_value_heads})"
            )
        if self.sliding_window_layers > self.num_layers:
            raise ValueError("slidingWindowLayers cannot exceed numLayers")
        if self.sliding_window_layers and not self.sliding_window:
            raise ValueError("slidingWindowLayers is set but slidingWindow is not")
        if (self.num_experts is None) != (self.experts_per_token is None):
            raise ValueError("numExperts and expertsPerToken go together")
        return self


class QuantizedCheckpoint(Frozen):
    """One supported weight format; ``repo`` is the pre-quantized checkpoint when one is needed."""

    repo: str | None = None
    revision: str | None = None


class ModelSpec(Frozen):
    """One open model, as ``models/<id>.yaml`` describes it."""

    id: str
    display_name: str
    hf_repo: str
    revision: str = "main"
    license: License
    architecture: Architecture
    total_params: Annotated[float, Field(gt=0)]  # parameters, not billions
    active_params: float | None = None  # MoE: parameters used per token
    quantizations: dict[Quantization, QuantizedCheckpoint]
    gated: bool = False  # the hub requires an accepted licence (and a token) to download
    sources: list[Source] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id_is_slug(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", v):
            raise ValueError(f"model id {v!r} must be lowercase letters, digits, '.' and '-'")
        return v

    @model_validator(mode="after")
    def _checkpoints(self) -> ModelSpec:
        for q in (Quantization.AWQ, Quantization.GPTQ, Quantization.INT8):
            cp = self.quantizations.get(q)
            if cp is not None and cp.repo is None:
                raise ValueError(f"quantization {q.value} needs a pre-quantized checkpoint repo")
        return self

    @property
    def params_per_token(self) -> float:
        """Parameters touched per token (all of them for a dense model)."""
        return self.active_params or self.total_params


class GpuSpec(Frozen):
    """One GPU model (datasheet figures, dense Tensor Core rates)."""

    id: str  # a10g, l4, l40s, a100-40gb, a100-80gb, h100, h200
    name: str
    architecture: str
    compute_capability: str
    memory_mib: Annotated[int, Field(gt=0)]  # as EC2 DescribeInstanceTypes reports it
    bandwidth_gbps: Annotated[float, Field(gt=0)]  # HBM/GDDR, GB/s (decimal)
    bf16_tflops: Annotated[float, Field(gt=0)]
    fp8_tflops: float | None = None
    native_fp8: bool
    interconnect: Literal["nvlink", "pcie"]
    interconnect_gbps: Annotated[float, Field(gt=0)]  # per-GPU, one direction, GB/s
    uncertain: list[str] = Field(default_factory=list)  # field names whose value is flagged (U)
    sources: list[Source] = Field(min_length=1)


class InstanceSpec(Frozen):
    """One EC2 GPU instance type."""

    type: str
    gpu: str  # GpuSpec.id
    gpus: Annotated[int, Field(gt=0)]
    vcpu: Annotated[int, Field(gt=0)]
    memory_gib: Annotated[float, Field(gt=0)]
    network_gbps: float
    nvme_gb: int
    efa_interfaces: int = 0
    capacity_block: bool = False
    on_demand_usd_per_hour: float | None  # us-east-1; None where AWS lists no on-demand price
    price_date: date
    sources: list[Source] = Field(min_length=1)

    @property
    def family(self) -> str:
        return self.type.split(".", 1)[0]


# --------------------------------------------------------------------------- the stack


class WorkloadProfile(StrEnum):
    """The field report's four tasks; token shapes live in servekit/data/workloads.yaml."""

    SUMMARIZATION = "summarization"
    EXTRACTION = "extraction"
    CHAT = "chat"
    CODE = "code"


class SlaSpec(Frozen):
    """What a replica promises: p95 latency at a batch size."""

    p95_e2e_seconds: Annotated[float, Field(gt=0, le=600)]
    p95_ttft_seconds: Annotated[float, Field(gt=0, le=600)] | None = None
    concurrency_per_replica: Annotated[int, Field(ge=1, le=4096)]  # = the batch size vLLM is capped at
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    workload: WorkloadProfile = WorkloadProfile.CHAT

    @model_validator(mode="after")
    def _ttft_below_e2e(self) -> SlaSpec:
        if self.p95_ttft_seconds is not None and self.p95_ttft_seconds > self.p95_e2e_seconds:
            raise ValueError(
                f"p95TtftSeconds ({self.p95_ttft_seconds}) cannot exceed p95E2eSeconds ({self.p95_e2e_seconds})"
            )
        return self


class PurchaseOption(StrEnum):
    ON_DEMAND = "on-demand"
    SPOT = "spot"
    SAVINGS_PLAN_1Y = "savings-plan-1y"
    SAVINGS_PLAN_3Y = "savings-plan-3y"
    RESERVED_1Y = "reserved-1y"
    RESERVED_3Y = "reserved-3y"
    ODCR = "odcr"
    CAPACITY_BLOCK = "capacity-block"


class Payment(StrEnum):
    """How a commitment (savings plan / reserved instance) is paid."""

    NO_UPFRONT = "no-upfront"
    PARTIAL_UPFRONT = "partial-upfront"
    ALL_UPFRONT = "all-upfront"


COMMITTED_OPTIONS = frozenset({PurchaseOption.SAVINGS_PLAN_1Y, PurchaseOption.SAVINGS_PLAN_3Y,
                               PurchaseOption.RESERVED_1Y, PurchaseOption.RESERVED_3Y})


class Purchase(Frozen):
    option: PurchaseOption = PurchaseOption.ON_DEMAND
    payment: Payment = Payment.NO_UPFRONT  # savings plans / reserved instances only
    reservation_id: str | None = None  # cr-... for odcr / capacity-block
    reservation_resource_group_arn: str | None = None  # odcr: several reservations back-fill
    availability_zone: str | None = None  # the reservation's AZ
    end_date: date | None = None  # capacity-block end
    on_demand_floor: Annotated[int, Field(ge=0)] = 0  # spot: replicas kept on on-demand

    @model_validator(mode="after")
    def _reservation_fields(self) -> Purchase:
        o = self.option
        if o is PurchaseOption.CAPACITY_BLOCK and not (
            self.reservation_id and self.availability_zone and self.end_date
        ):
            raise ValueError("capacity-block needs reservationId, availabilityZone and endDate")
        if o is PurchaseOption.ODCR:
            if not (self.reservation_id or self.reservation_resource_group_arn):
                raise ValueError("odcr needs reservationId or reservationResourceGroupArn")
            if not self.availability_zone:
                raise ValueError("odcr needs the reservation's availabilityZone")
        if self.reservation_id is not None and not re.fullmatch(r"cr-[0-9a-f]{8,17}", self.reservation_id):
            raise ValueError(f"reservationId {self.reservation_id!r} is not a capacity reservation id (cr-...)")
        if o not in (PurchaseOption.ODCR, PurchaseOption.CAPACITY_BLOCK) and (
            self.reservation_id or self.reservation_resource_group_arn
        ):
            raise ValueError(f"a reservation only applies to odcr or capacity-block, not {o.value}")
        if o is not PurchaseOption.SPOT and self.on_demand_floor:
            raise ValueError("onDemandFloor only applies to spot")
        if self.payment is not Payment.NO_UPFRONT and o not in COMMITTED_OPTIONS:
            raise ValueError(f"payment {self.payment.value} only applies to savings plans and reserved instances, "
                             f"not {o.value}")
        return self


class ModelSource(StrEnum):
    HF = "hf"  # pulled from the Hugging Face hub at start (needs egress)
    S3 = "s3"  # the kit's own S3 model store (works with egress none)


class LoraAdapter(Frozen):
    name: str
    source: str  # s3://bucket/prefix or hf://org/repo

    @field_validator("source")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.fullmatch(r"(s3|hf)://\S+", v):
            raise ValueError(f"LoRA source {v!r} must start with s3:// or hf://")
        return v


class Autoscaling(Frozen):
    min_replicas: Annotated[int, Field(ge=0)]
    max_replicas: Annotated[int, Field(ge=1)]
    waiting_requests_target: Annotated[int, Field(ge=1)] = 4

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"minReplicas ({self.min_replicas}) is above maxReplicas ({self.max_replicas})")
        return self


class ModelDeployment(Frozen):
    """One served model in a stack."""

    name: str  # served model name, Service and namespace name
    model: str  # ModelSpec.id
    quantization: Quantization = Quantization.BF16
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    max_context: Annotated[int, Field(ge=256)] | None = None  # default: min(model max, 8192)
    gpus: list[str] | None = None  # allowlist of GpuSpec ids
    instance_type: str | None = None  # pin the instance type
    tensor_parallel_size: Annotated[int, Field(ge=1, le=8)] | None = None  # pin TP
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    spread_across_zones: bool = True
    gpu_memory_utilization: Annotated[float, Field(gt=0.5, le=0.98)] = 0.92
    purchase: Purchase = Purchase()
    sla: SlaSpec
    source: ModelSource = ModelSource.HF
    lora_adapters: list[LoraAdapter] = Field(default_factory=list)
    autoscaling: Autoscaling | None = None
    restart_every_hours: Annotated[int, Field(ge=1, le=168)] | None = None
    extra_engine_args: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS_LABEL.fullmatch(v):
            raise ValueError(
                f"name {v!r} must be a DNS label: lowercase letters, digits and '-', start with a letter, "
                "at most 40 characters"
            )
        return v

    @model_validator(mode="after")
    def _cross(self) -> ModelDeployment:
        names = [a.name for a in self.lora_adapters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"LoRA adapter names must be unique; repeated: {', '.join(dupes)}")
        if self.name in names:
            raise ValueError(f"a LoRA adapter cannot be named like the served model ({self.name!r})")
        if self.autoscaling is not None and not (
            self.autoscaling.min_replicas <= self.replicas <= self.autoscaling.max_replicas
        ):
            raise ValueError(
                f"replicas ({self.replicas}) must lie within autoscaling "
                f"[{self.autoscaling.min_replicas}, {self.autoscaling.max_replicas}]"
            )
        if self.purchase.on_demand_floor > self.replicas:
            raise ValueError("purchase.onDemandFloor cannot exceed replicas")
        return self

    @property
    def max_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling else self.replicas


class Egress(StrEnum):
    NAT = "nat"
    NONE = "none"


class NetworkSpec(Frozen):
    vpc_cidr: str = "10.40.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    egress: Egress = Egress.NAT

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"vpcCidr {v!r} is not an IPv4 network in CIDR form ({e})") from None
        if not net.is_private:
            raise ValueError(f"vpcCidr {v!r} is not a private (RFC 1918) range")
        if not 16 <= net.prefixlen <= 20:
            raise ValueError(f"vpcCidr {v!r} must be between /16 and /20 to leave room for pod IPs")
        return v


class NodeOs(StrEnum):
    """Node operating system; both EKS-optimized NVIDIA variants (sizing-and-cost-facts.md §2)."""

    AL2023 = "al2023"  # AL2023_x86_64_NVIDIA: drivers in the AMI, the NVIDIA device plugin is installed by the kit
    BOTTLEROCKET = "bottlerocket"  # BOTTLEROCKET_x86_64_NVIDIA: device plugin built in, immutable OS


class ClusterSpec(Frozen):
    version: str = "1.34"
    node_os: NodeOs = NodeOs.AL2023
    endpoint_public: bool = False
    public_access_cidrs: list[str] = Field(default_factory=list)
    admin_role_arn: str | None = None
    system_instance_type: str = "m7i.large"

    @field_validator("version")
    @classmethod
    def _supported(cls, v: str) -> str:
        if v not in SUPPORTED_EKS_VERSIONS:
            raise ValueError(f"EKS version {v!r} is not supported; allowed: {', '.join(SUPPORTED_EKS_VERSIONS)}")
        return v

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            try:
                net = ipaddress.ip_network(c, strict=True)
            except ValueError as e:
                raise ValueError(f"publicAccessCidrs entry {c!r} is not a CIDR ({e})") from None
            if net.prefixlen == 0:
                raise ValueError(f"publicAccessCidrs entry {c!r} opens the API to the whole internet")
        return v

    @field_validator("admin_role_arn")
    @classmethod
    def _arn(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", v):
            raise ValueError(f"adminRoleArn {v!r} is not an IAM role ARN")
        return v

    @model_validator(mode="after")
    def _public_needs_allowlist(self) -> ClusterSpec:
        if self.endpoint_public and not self.public_access_cidrs:
            raise ValueError("endpointPublic needs an explicit publicAccessCidrs allowlist (0.0.0.0/0 is refused)")
        if not self.endpoint_public and self.public_access_cidrs:
            raise ValueError("publicAccessCidrs is set but endpointPublic is false")
        return self


# EKS versions in standard support on the date of the reference (sizing-and-cost-facts.md §2).
SUPPORTED_EKS_VERSIONS = ("1.34", "1.35", "1.36")


class DataClassification(StrEnum):
    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"  # PHI / regulated


class Tags(Frozen):
    owner: str
    cost_center: str
    data_classification: DataClassification


class ModelStoreSpec(Frozen):
    """The kit's S3 model store (components/model_store.py).

    ``enabled: false`` means this stack has no model store: no bucket is created, and a model with
    ``source: s3`` is refused (there would be nothing to load it from). With ``enabled: true`` (the
    default) the bucket is created when at least one model loads from it.
    """

    enabled: bool = True


class PrometheusMode(StrEnum):
    """Where the stack's Prometheus lives (components/monitoring.py, docs/monitoring.md)."""

    IN_CLUSTER = "in-cluster"  # kube-prometheus-stack in namespace monitoring (Prometheus, Alertmanager, Grafana)
    AMP = "amp"  # Amazon Managed Service for Prometheus: workspace, managed scraper, rules, alert manager
    NONE = "none"  # no Prometheus at all; CloudWatch (if enabled) is the only alerting path


# Values CloudWatch Logs accepts for retentionInDays (PutRetentionPolicy).
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                             2557, 2922, 3288, 3653)
# AMP keeps samples 150 days unless configured, at most 1095 days (AMP user guide, workspace configuration).
AMP_MAX_RETENTION_DAYS = 1095
# A pragmatic address check (no DNS lookups): one @, a dot in the domain, no spaces or quotes. SNS sends a
# confirmation mail to each address; a subscription stays pending until its owner confirms it.
EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


class MonitoringSpec(Frozen):
    """``servekit:monitoring``: Prometheus mode, CloudWatch, where alerts go.

    ``retentionDays`` is the Prometheus retention (in-cluster TSDB, or the AMP workspace's);
    ``storageGib`` the in-cluster Prometheus volume. ``logRetentionDays`` overrides, for the
    monitoring log groups only, the platform's retention (30 days dev, 365 prod or sensitive data).
    """

    prometheus: PrometheusMode = PrometheusMode.IN_CLUSTER
    retention_days: Annotated[int, Field(ge=1, le=AMP_MAX_RETENTION_DAYS)] = 15
    storage_gib: Annotated[int, Field(ge=10, le=16384)] = 50
    alert_emails: list[str] = Field(default_factory=list)
    cloudwatch: bool = True
    log_retention_days: int | None = None

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        bad = [e for e in v if not EMAIL.fullmatch(e) or len(e) > 254]
        if bad:
            raise ValueError(f"alertEmails: not an e-mail address: {', '.join(repr(b) for b in bad)}")
        lowered = [e.lower() for e in v]
        dupes = sorted({e for e in lowered if lowered.count(e) > 1})
        if dupes:
            raise ValueError(f"alertEmails: repeated address(es): {', '.join(dupes)}")
        return v

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int | None) -> int | None:
        if v is not None and v not in CLOUDWATCH_RETENTION_DAYS:
            raise ValueError(f"logRetentionDays {v} is not a CloudWatch Logs retention; allowed: "
                             f"{', '.join(str(d) for d in CLOUDWATCH_RETENTION_DAYS)}")
        return v

    @model_validator(mode="after")
    def _mode_fields(self) -> MonitoringSpec:
        given = self.model_fields_set
        if "storage_gib" in given and self.prometheus is not PrometheusMode.IN_CLUSTER:
            raise ValueError(
                f"storageGib only applies to prometheus: in-cluster (prometheus is {self.prometheus.value})")
        if "retention_days" in given and self.prometheus is PrometheusMode.NONE:
            raise ValueError("retentionDays has no Prometheus to apply to (prometheus is none)")
        if self.prometheus is PrometheusMode.NONE and not self.cloudwatch:
            raise ValueError("prometheus none with cloudwatch false leaves the stack without any alerting")
        return self


class DeploymentSpec(Frozen):
    """The whole stack file, validated."""

    stack: str
    region: str = "us-east-1"
    environment: Literal["dev", "staging", "prod"] = "dev"
    tags: Tags
    network: NetworkSpec = NetworkSpec()
    cluster: ClusterSpec = ClusterSpec()
    models: list[ModelDeployment] = Field(min_length=1)
    budget_monthly_usd: Annotated[float, Field(gt=0)] | None = None
    sla_gate: bool = True
    model_store: ModelStoreSpec = ModelStoreSpec()
    monitoring: MonitoringSpec = MonitoringSpec()

    @model_validator(mode="before")
    @classmethod
    def _monitoring_default(cls, data: object) -> object:
        """``monitoring.prometheus`` defaults to in-cluster, or to amp when ``network.egress`` is none
        (an air-gapped VPC cannot pull kube-prometheus-stack's images; see the after-validator)."""
        if not isinstance(data, dict):
            return data
        network = data.get("network")
        egress = network.get("egress") if isinstance(network, dict) else getattr(network, "egress", None)
        if str(getattr(egress, "value", egress)) != Egress.NONE.value:
            return data
        monitoring = data.get("monitoring", {})
        if isinstance(monitoring, dict) and "prometheus" not in monitoring:
            return {**data, "monitoring": {**monitoring, "prometheus": PrometheusMode.AMP.value}}
        return data

    @property
    def nat_gateways(self) -> int:
        """NAT gateways the network creates: none without NAT egress; one shared by all AZs in dev
        (cost over AZ resilience); one per AZ otherwise, so an AZ outage never cuts the others' egress."""
        if self.network.egress is not Egress.NAT:
            return 0
        return 1 if self.environment == "dev" else self.network.az_count

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelDeployment]) -> list[ModelDeployment]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique in a stack; repeated: {', '.join(dupes)}")
        return models

    @model_validator(mode="after")
    def _sources_and_monitoring(self) -> DeploymentSpec:
        if not self.model_store.enabled:
            s3 = [m.name for m in self.models if m.source is ModelSource.S3]
            if s3:
                raise ValueError(
                    f"source s3 needs the model store, but modelStore.enabled is false; "
                    f"source s3 given for: {', '.join(s3)}"
                )
        if self.network.egress is Egress.NONE:
            hf = [m.name for m in self.models if m.source is ModelSource.HF]
            if hf:
                raise ValueError(
                    f"network.egress is none, so models must load from the s3 model store; "
                    f"source hf given for: {', '.join(hf)}"
                )
            hub_loras = [f"{m.name}/{a.name}" for m in self.models for a in m.lora_adapters
                         if a.source.startswith("hf://")]
            if hub_loras:
                raise ValueError(f"network.egress is none, so LoRA adapters must come from s3://; hf:// given for: "
                                 f"{', '.join(hub_loras)}")
            if self.monitoring.prometheus is PrometheusMode.IN_CLUSTER:
                raise ValueError(
                    "network.egress is none, so monitoring.prometheus cannot be in-cluster (kube-prometheus-stack "
                    "pulls from quay.io, registry.k8s.io and docker.io under chart-specific image keys); use amp "
                    "or none")
        autoscaled = [m.name for m in self.models if m.autoscaling is not None]
        if autoscaled and self.monitoring.prometheus is not PrometheusMode.IN_CLUSTER:
            raise ValueError(
                f"autoscaling reads the queue from the in-cluster Prometheus (KEDA), but monitoring.prometheus is "
                f"{self.monitoring.prometheus.value}; autoscaling given for: {', '.join(autoscaled)}")
        return self
