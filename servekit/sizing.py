"""Sizing: which GPUs a model needs, how replicas pack onto nodes, and what latency to expect.

The one home of the memory math (DESIGN.md). ``place(deployment, catalog)`` walks every
(instance type, tensor-parallel size) pair, rejects those that cannot hold the weights, the KV
cache for the SLA's batch, or the SLA's p95, and picks the cheapest survivor by whole-node cost.

Memory follows vLLM's V1 worker: KV budget per GPU = gpu_memory_utilization x GPU memory
- weights / TP - activation peak of the profile run - non-torch memory; CUDA graphs are
captured afterwards, outside that budget (sizing-and-cost-facts.md §4).

Latency is a roofline: an engine step streams the weights (for MoE, the experts its tokens
touch) and the running sequences' KV cache, or is compute-bound, whichever is slower; vLLM V1
puts chunked-prefill tokens into the same step as the decodes. Under a closed loop at the SLA's
concurrency the prefill load and the step time depend on each other; ``estimate_latency``
solves that fixed point. Efficiency factors live in data/roofline.yaml with their sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from servekit.catalog import Catalog
from servekit.errors import UserError
from servekit.spec import (
    Frozen,
    GpuSpec,
    InstanceSpec,
    KvCacheDtype,
    ModelDeployment,
    ModelSpec,
    PurchaseOption,
    Quantization,
)
from servekit.workloads import TokenShape, profile

GIB = 1024**3
MIB = 1024**2
DEFAULT_MAX_CONTEXT = 8192
ROOFLINE_FILE = Path(__file__).parent / "data" / "roofline.yaml"

# int4 AWQ/GPTQ with group size 128: 4-bit weights plus, per group of 128, an fp16 scale and a
# packed 4-bit zero point -> 0.5 + (2 + 0.5) / 128 bytes per parameter.
INT4_BYTES_PER_PARAM = 0.5 + 2.5 / 128
BYTES_PER_PARAM = {
    Quantization.BF16: 2.0,
    Quantization.FP16: 2.0,
    Quantization.FP8: 1.0,
    Quantization.INT8: 1.0,
    Quantization.AWQ: INT4_BYTES_PER_PARAM,
    Quantization.GPTQ: INT4_BYTES_PER_PARAM,
}


@dataclass(frozen=True)
class Roofline:
    weight_stream_efficiency: float
    kv_read_efficiency: float
    compute_efficiency: float
    unmeasured_overhead: float
    all_reduce_latency_us: dict[str, float]
    non_torch_gib: dict[str, float]
    cuda_graph_gib: float
    activation_hidden_factor: float
    activation_intermediate_factor: float
    sampler_logits_copies: float


@cache
def roofline() -> Roofline:
    d = yaml.safe_load(ROOFLINE_FILE.read_text())
    return Roofline(
        weight_stream_efficiency=d["weightStreamEfficiency"],
        kv_read_efficiency=d["kvReadEfficiency"],
        compute_efficiency=d["computeEfficiency"],
        unmeasured_overhead=d["unmeasuredOverhead"],
        all_reduce_latency_us=d["allReduceLatencyUs"],
        non_torch_gib=d["nonTorchGib"],
        cuda_graph_gib=d["cudaGraphGib"],
        activation_hidden_factor=d["activationHiddenFactor"],
        activation_intermediate_factor=d["activationIntermediateFactor"],
        sampler_logits_copies=d["samplerLogitsCopies"],
    )


# --------------------------------------------------------------------------- memory facts


def embedding_params(model: ModelSpec) -> float:
    """Input embedding plus LM head (one matrix when tied); quantized checkpoints keep them 16-bit."""
    a = model.architecture
    return a.vocab_size * a.hidden_size * (1 if a.tie_word_embeddings else 2)


def weight_bytes(model: ModelSpec, quant: Quantization) -> float:
    """Bytes of weights in GPU memory for a weight format."""
    emb = embedding_params(model)
    body = model.total_params - emb
    return body * BYTES_PER_PARAM[quant] + emb * 2.0


def kv_dtype_bytes(kv: KvCacheDtype) -> int:
    return 1 if kv is KvCacheDtype.FP8 else 2


def kv_heads_per_rank(model: ModelSpec, tp: int) -> int:
    """vLLM's QKVParallelLinear: KV heads split over ranks, or replicated when TP exceeds them."""
    return max(1, model.architecture.num_key_value_heads // tp)


def kv_bytes_per_token(model: ModelSpec, kv: KvCacheDtype = KvCacheDtype.AUTO, tp: int = 1) -> float:
    """KV bytes one token costs summed over all ranks, at full attention on every layer.

    2 (K and V) x layers x KV heads x head_dim x dtype bytes; with TP above the KV head count each
    rank still stores one head, so the total grows (replication).
    """
    a = model.architecture
    heads_total = kv_heads_per_rank(model, tp) * tp
    return 2 * a.num_layers * heads_total * a.head_dim * kv_dtype_bytes(kv)


def kv_bytes_per_sequence(model: ModelSpec, tokens: float, kv: KvCacheDtype, tp: int) -> float:
    """KV bytes one sequence of ``tokens`` tokens holds; sliding-window layers cap at the window."""
    a = model.architecture
    per_layer_token = kv_bytes_per_token(model, kv, tp) / a.num_layers
    full_layers = a.num_layers - a.sliding_window_layers
    window = min(tokens, a.sliding_window or tokens)
    return per_layer_token * (full_layers * tokens + a.sliding_window_layers * window)


def legal_tp_sizes(model: ModelSpec, max_gpus: int = 8) -> list[int]:
    """TP sizes vLLM accepts: attention heads divisible by TP; KV heads divide TP or TP divides them."""
    a = model.architecture
    out = []
    for tp in range(1, max_gpus + 1):
        if a.num_attention_heads % tp:
            continue
        kv = a.num_key_value_heads
        if (tp >= kv and tp % kv) or (tp < kv and kv % tp):
            continue
        out.append(tp)
    return out


def tp_illegal_reason(model: ModelSpec, tp: int) -> str | None:
    a = model.architecture
    if a.num_attention_heads % tp:
        return f"{a.num_attention_heads} attention heads are not divisible by TP {tp}"
    kv = a.num_key_value_heads
    if tp >= kv and tp % kv:
        return f"TP {tp} is not a multiple of the {kv} KV heads"
    if tp < kv and kv % tp:
        return f"{kv} KV heads are not divisible by TP {tp}"
    return None


def default_batch_tokens(gpu: GpuSpec) -> int:
    """vLLM's OpenAI-server default max_num_batched_tokens: 8192 on >= 70 GiB non-A100 GPUs, else 2048."""
    high = gpu.memory_mib * MIB >= 70 * GIB and not gpu.id.startswith("a100")
    return 8192 if high else 2048


class MemoryBreakdown(Frozen):
    """Per-GPU memory in GiB."""

    gpu_total_gib: float
    budget_gib: float  # gpu_memory_utilization x total
    weights_gib: float  # this rank's share
    activation_gib: float
    non_torch_gib: float
    kv_cache_gib: float  # what is left for the KV cache (may be negative: does not fit)
    cuda_graphs_gib: float  # outside the budget
    headroom_gib: float  # total - budget - CUDA graphs: must stay positive


def memory_breakdown(
    model: ModelSpec, gpu: GpuSpec, quant: Quantization, tp: int, util: float, max_num_seqs: int,
    batch_tokens: int,
) -> MemoryBreakdown:
    r = roofline()
    a = model.architecture
    total = gpu.memory_mib * MIB
    budget = total * util
    weights = weight_bytes(model, quant) / tp
    activation = batch_tokens * 2 * (
        r.activation_hidden_factor * a.hidden_size + r.activation_intermediate_factor * a.intermediate_size / tp
    ) + r.sampler_logits_copies * max_num_seqs * a.vocab_size * 4
    non_torch = (r.non_torch_gib["tp1"] if tp == 1 else r.non_torch_gib["tpN"]) * GIB
    kv = budget - weights - activation - non_torch
    graphs = r.cuda_graph_gib * GIB
    return MemoryBreakdown(
        gpu_total_gib=total / GIB,
        budget_gib=budget / GIB,
        weights_gib=weights / GIB,
        activation_gib=activation / GIB,
        non_torch_gib=non_torch / GIB,
        kv_cache_gib=kv / GIB,
        cuda_graphs_gib=graphs / GIB,
        headroom_gib=(total - budget - graphs) / GIB,
    )


def kv_capacity_tokens(model: ModelSpec, mem: MemoryBreakdown, kv: KvCacheDtype, tp: int) -> int:
    """Tokens the KV cache holds at full attention (vLLM's "GPU KV cache size" in tokens)."""
    if mem.kv_cache_gib <= 0:
        return 0
    return int(mem.kv_cache_gib * GIB * tp // kv_bytes_per_token(model, kv, tp))


def max_sequences(model: ModelSpec, mem: MemoryBreakdown, kv: KvCacheDtype, tp: int, tokens: float) -> int:
    """How many sequences of ``tokens`` tokens fit in the KV cache at once."""
    if mem.kv_cache_gib <= 0:
        return 0
    return int(mem.kv_cache_gib * GIB * tp // kv_bytes_per_sequence(model, tokens, kv, tp))


# --------------------------------------------------------------------------- latency


def _compute_tflops(gpu: GpuSpec, quant: Quantization) -> float:
    """Tensor rate the GEMMs run at: FP8 W8A8 where the GPU has native FP8, int8 at 2x bf16, else bf16.

    int4 and FP8-on-Ampere are weight-only: dequantized to 16-bit, so they compute at the bf16 rate.
    """
    if quant is Quantization.FP8 and gpu.native_fp8 and gpu.fp8_tflops:
        return gpu.fp8_tflops
    if quant is Quantization.INT8:
        return gpu.bf16_tflops * 2
    return gpu.bf16_tflops


def _weights_read_per_step(model: ModelSpec, quant: Quantization, tokens: float) -> float:
    """Weight bytes a step streams: dense models read all; MoE reads the experts its tokens touch."""
    total = weight_bytes(model, quant)
    a = model.architecture
    if not a.num_experts or not a.experts_per_token or not model.active_params:
        return total
    e, k = a.num_experts, a.experts_per_token
    per_expert = (model.total_params - model.active_params) / (e - k)
    expert_params = per_expert * e
    touched = 1 - (1 - k / e) ** tokens  # share of experts at least one token routes to
    share = (model.total_params - expert_params * (1 - touched)) / model.total_params
    return total * share


def _all_reduce_seconds(gpu: GpuSpec, tp: int, tokens: float, hidden: int, layers: int) -> float:
    """Two ring all-reduces per layer of tokens x hidden bf16 activations."""
    if tp == 1:
        return 0.0
    r = roofline()
    size = tokens * hidden * 2
    transfer = 2 * (tp - 1) / tp * size / (gpu.interconnect_gbps * 1e9)
    return 2 * layers * (transfer + r.all_reduce_latency_us[gpu.interconnect] * 1e-6)


def step_seconds(
    model: ModelSpec, gpu: GpuSpec, quant: Quantization, kv: KvCacheDtype, tp: int, batch: int, context: float,
    prefill_tokens: float = 0.0, prefill_context: float = 0.0,
) -> float:
    """One engine step: ``batch`` decode tokens plus ``prefill_tokens`` chunked-prefill tokens.

    vLLM V1 schedules prefill chunks into the same step as the running decodes, so the GEMMs
    stream the weights once for all tokens: the step is bandwidth-bound until the tokens' compute
    exceeds the weight read. Attention reads each running sequence's KV cache once.
    """
    r = roofline()
    a = model.architecture
    bw = gpu.bandwidth_gbps * 1e9
    tokens = batch + prefill_tokens
    weights = _weights_read_per_step(model, quant, tokens) / tp / (bw * r.weight_stream_efficiency)
    flops = 2 * model.params_per_token * tokens + 2 * a.num_layers * prefill_tokens * prefill_context * (
        a.num_attention_heads * a.head_dim)
    compute = flops / tp / (_compute_tflops(gpu, quant) * 1e12 * r.compute_efficiency)
    kv_read = batch * kv_bytes_per_sequence(model, context, kv, tp) / tp / (bw * r.kv_read_efficiency)
    comm = _all_reduce_seconds(gpu, tp, tokens, a.hidden_size, a.num_layers)
    return (max(weights, compute) + kv_read + comm) * r.unmeasured_overhead


class LatencyEstimate(Frozen):
    decode_step_seconds: float  # at the SLA batch, with the steady prefill load folded in
    mean_ttft_seconds: float
    mean_e2e_seconds: float
    p95_e2e_seconds: float
    p95_ttft_seconds: float
    output_tokens_per_second: float  # per replica, at the SLA's concurrency
    prefill_bound: bool  # prefill compute, not decode bandwidth, limits the request rate


def estimate_latency(
    model: ModelSpec, gpu: GpuSpec, quant: Quantization, kv: KvCacheDtype, tp: int, batch: int,
    shape: TokenShape, batch_tokens: int, max_context: int,
) -> LatencyEstimate:
    """Closed loop at ``batch`` concurrent requests (each ends, the next starts at once).

    Fixed point: the request rate X = batch / e2e brings X * prompt tokens per second of prefill,
    i.e. c = X * prompt * t_step prefill tokens in each step next to the batch's decodes; a step's
    prefill room is batch_tokens - batch (vLLM's max_num_batched_tokens). A request waits
    ceil(prompt / room) steps for its first token, then decodes one token per step. When the
    prefill demand would exceed the room, the rate is capped by it (prefill-bound).
    """
    out = shape.output_tokens
    p_mean = min(shape.prompt_mean_tokens, max_context - out)
    p95 = min(float(shape.prompt_p95_tokens), max_context - out)
    room = max(batch_tokens - batch, 1)
    ctx_mean = p_mean + out / 2

    def step(c: float, ctx: float) -> float:
        return step_seconds(model, gpu, quant, kv, tp, batch, ctx, c, p_mean / 2)

    def prefill_wait(prompt: float, ctx: float) -> float:
        """Steps until the first token: the prompt's own chunks fill the step's prefill room."""
        full, rest = divmod(prompt, room)
        return full * step(room, ctx) + (step(rest, ctx) if rest else 0.0)

    t = step(0.0, ctx_mean)
    e2e = prefill_wait(p_mean, ctx_mean) + out * t
    # Full-room steps bound the rate prefills can be served at.
    x_cap = room / (p_mean * step(room, ctx_mean))
    prefill_bound = False
    for _ in range(100):
        x = batch / e2e
        if x > x_cap:
            x, prefill_bound = x_cap, True
        c = min(x * p_mean * t, room)
        t = step(c, ctx_mean)
        new = max(prefill_wait(p_mean, ctx_mean) + out * t, batch / x_cap)
        if abs(new - e2e) < 1e-6 * e2e:
            e2e = new
            break
        e2e = new
    x = batch / e2e
    c = min(x * p_mean * t, room)
    queue = max(0.0, e2e - prefill_wait(p_mean, ctx_mean) - out * t)  # waiting for prefill room when saturated
    ttft_mean = prefill_wait(p_mean, ctx_mean) + queue
    # The 95th-percentile request carries a p95-length prompt: more prefill, and decode steps over
    # a longer context; the others' load stays the mean's.
    ctx95 = p95 + out / 2
    t95 = step(c, ctx95)
    ttft95 = prefill_wait(p95, ctx95) + queue
    p95_e2e = ttft95 + out * t95
    return LatencyEstimate(
        decode_step_seconds=t,
        mean_ttft_seconds=ttft_mean,
        mean_e2e_seconds=e2e,
        p95_e2e_seconds=max(p95_e2e, e2e),
        p95_ttft_seconds=ttft95,
        output_tokens_per_second=batch * out / e2e,
        prefill_bound=prefill_bound,
    )


# --------------------------------------------------------------------------- placement


class Candidate(Frozen):
    instance_type: str
    gpu_type: str
    tensor_parallel_size: int
    replicas_per_node: int
    nodes: int
    idle_gpus: int
    hourly_usd: float | None  # on-demand, whole nodes, us-east-1
    feasible: bool
    reason: str  # why it lost (or "chosen")
    memory: MemoryBreakdown | None = None
    kv_cache_tokens: int = 0
    max_concurrency: int = 0  # sequences of the full max context
    workload_concurrency: int = 0  # sequences of the workload's mean length (prompt + output)
    latency: LatencyEstimate | None = None


class Placement(Frozen):
    """Where and how one model deployment runs; everything downstream reads this, never re-derives it."""

    name: str
    model: str
    hf_repo: str
    quantization: Quantization
    kv_cache_dtype: KvCacheDtype
    instance_type: str
    gpu_type: str
    gpus_per_node: int
    tensor_parallel_size: int
    replicas: int
    max_replicas: int
    replicas_per_node: int
    nodes: int
    max_nodes: int
    idle_gpus: int
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    weights_gib: float  # whole model
    memory: MemoryBreakdown
    kv_cache_tokens: int
    max_concurrency: int
    workload_concurrency: int
    predicted_p95_seconds: float
    predicted_p95_ttft_seconds: float
    predicted_mean_seconds: float
    output_tokens_per_second: float  # per replica at the SLA's concurrency
    hourly_usd: float  # on-demand, whole nodes for the steady replicas, us-east-1
    explanation: list[str]
    warnings: list[str]
    rejected: list[Candidate]

    def summary_json(self) -> dict[str, object]:
        """The fields ``servekit size --json`` promises, plus the rest."""
        d = self.to_json()
        d["weightsGiB"] = d.pop("weightsGib")
        d["rejected"] = [
            {"instanceType": c.instance_type, "tensorParallelSize": c.tensor_parallel_size,
             "hourlyUsd": c.hourly_usd, "reason": c.reason}
            for c in self.rejected
        ]
        return d


class NoPlacement(Exception):
    """Nothing can serve the request; carries every candidate with the reason it failed."""

    def __init__(self, deployment: ModelDeployment, candidates: list[Candidate]) -> None:
        self.deployment = deployment
        self.candidates = candidates
        super().__init__(f"no instance type can serve {deployment.name} ({deployment.model})")


def resolve_context(model: ModelSpec, dep: ModelDeployment, where: str = "") -> int:
    ctx = dep.max_context or min(model.architecture.max_position_embeddings, DEFAULT_MAX_CONTEXT)
    if ctx > model.architecture.max_position_embeddings:
        raise UserError(
            f"exceeds what {model.id} supports",
            path=f"{where}maxContext", given=ctx, allowed=f"at most {model.architecture.max_position_embeddings}",
        )
    return ctx


def _check_request(model: ModelSpec, dep: ModelDeployment, catalog: Catalog, where: str) -> None:
    if dep.quantization not in model.quantizations:
        raise UserError(
            f"{model.id} has no {dep.quantization.value} checkpoint in models/{model.id}.yaml",
            path=f"{where}quantization", given=dep.quantization.value,
            allowed=", ".join(q.value for q in model.quantizations),
        )
    for g in dep.gpus or []:
        if g not in catalog.gpus:
            raise UserError("unknown GPU", path=f"{where}gpus", given=g, allowed=", ".join(catalog.gpus))
    if dep.instance_type and dep.instance_type not in catalog.instances:
        raise UserError("unknown instance type", path=f"{where}instanceType", given=dep.instance_type,
                        allowed=", ".join(catalog.instances))
    if dep.gpus and dep.instance_type and catalog.instances[dep.instance_type].gpu not in dep.gpus:
        raise UserError("instanceType's GPU is not in the gpus allowlist", path=f"{where}instanceType",
                        given=dep.instance_type, allowed=", ".join(dep.gpus))
    if dep.tensor_parallel_size:
        why = tp_illegal_reason(model, dep.tensor_parallel_size)
        if why:
            raise UserError(f"tensorParallelSize is illegal for {model.id}: {why}",
                            path=f"{where}tensorParallelSize", given=dep.tensor_parallel_size,
                            allowed=", ".join(map(str, legal_tp_sizes(model))))
    if dep.sla.concurrency_per_replica > 1024:
        raise UserError("concurrencyPerReplica above vLLM's largest default batch (1024)",
                        path=f"{where}sla.concurrencyPerReplica", given=dep.sla.concurrency_per_replica)


def _nodes_for(dep: ModelDeployment, replicas: int, per_node: int) -> int:
    nodes = math.ceil(replicas / per_node)
    if dep.spread_across_zones and replicas >= 2:
        nodes = max(nodes, 2)
    return nodes


def _evaluate(
    model: ModelSpec, dep: ModelDeployment, inst: InstanceSpec, gpu: GpuSpec, tp: int, ctx: int,
    shape: TokenShape,
) -> Candidate:
    per_node = inst.gpus // tp
    nodes = _nodes_for(dep, dep.replicas, per_node)
    idle = nodes * inst.gpus - dep.replicas * tp
    price = inst.on_demand_usd_per_hour
    hourly = price * nodes if price is not None else None
    base = {
        "instance_type": inst.type, "gpu_type": gpu.id, "tensor_parallel_size": tp,
        "replicas_per_node": per_node, "nodes": nodes, "idle_gpus": idle, "hourly_usd": hourly,
    }

    def lose(reason: str, **more: object) -> Candidate:
        return Candidate(feasible=False, reason=reason, **base, **more)

    why = tp_illegal_reason(model, tp)
    if why:
        return lose(why)
    if price is None and dep.purchase.option is not PurchaseOption.CAPACITY_BLOCK:
        return lose(f"{inst.type} has no on-demand price (Capacity Blocks only)")
    batch = dep.sla.concurrency_per_replica
    batch_tokens = max(default_batch_tokens(gpu), batch)
    mem = memory_breakdown(model, gpu, dep.quantization, tp, dep.gpu_memory_utilization, batch, batch_tokens)
    if mem.weights_gib + mem.activation_gib + mem.non_torch_gib > mem.budget_gib:
        return lose(
            f"weights {mem.weights_gib:.1f} GiB/GPU + overhead {mem.activation_gib + mem.non_torch_gib:.1f} GiB "
            f"exceed the {mem.budget_gib:.1f} GiB budget ({dep.gpu_memory_utilization:.2f} x "
            f"{mem.gpu_total_gib:.1f} GiB) at TP {tp}",
            memory=mem,
        )
    kv_tokens = kv_capacity_tokens(model, mem, dep.kv_cache_dtype, tp)
    full = max_sequences(model, mem, dep.kv_cache_dtype, tp, ctx)
    # The SLA batch must fit with every sequence at the workload's mean length (prompt + whole
    # output); tails beyond that are what vLLM's preemption absorbs.
    seq_len = int(min(ctx, shape.prompt_mean_tokens + shape.output_tokens))
    fits = max_sequences(model, mem, dep.kv_cache_dtype, tp, seq_len)
    more = {"memory": mem, "kv_cache_tokens": kv_tokens, "max_concurrency": full, "workload_concurrency": fits}
    if full < 1:
        return lose(f"KV cache {mem.kv_cache_gib:.1f} GiB/GPU holds {kv_tokens} tokens, "
                    f"less than one {ctx}-token sequence", **more)
    if fits < batch:
        return lose(f"KV cache holds {fits} sequences of {seq_len} tokens, SLA batch is {batch}", **more)
    lat = estimate_latency(model, gpu, dep.quantization, dep.kv_cache_dtype, tp, batch, shape, batch_tokens, ctx)
    more["latency"] = lat
    if lat.p95_e2e_seconds > dep.sla.p95_e2e_seconds:
        return lose(f"predicted p95 {lat.p95_e2e_seconds:.2f} s > SLA {dep.sla.p95_e2e_seconds:g} s "
                    f"at batch {batch}", **more)
    if dep.sla.p95_ttft_seconds is not None and lat.p95_ttft_seconds > dep.sla.p95_ttft_seconds:
        return lose(f"predicted p95 TTFT {lat.p95_ttft_seconds:.2f} s > SLA {dep.sla.p95_ttft_seconds:g} s", **more)
    return Candidate(feasible=True, reason="fits", **base, **more)


def candidates(
    dep: ModelDeployment, catalog: Catalog, where: str = "", shape: TokenShape | None = None,
) -> list[Candidate]:
    """Every (instance type, TP) pair the deployment allows, evaluated.

    ``shape``: the requests' token shape when it is not the SLA's workload profile (``servekit tco``).
    """
    model = catalog.model(dep.model)
    _check_request(model, dep, catalog, where)
    ctx = resolve_context(model, dep, where)
    shape = shape or profile(dep.sla.workload)
    out: list[Candidate] = []
    for inst in catalog.instances.values():
        if dep.instance_type and inst.type != dep.instance_type:
            continue
        if dep.gpus and inst.gpu not in dep.gpus:
            continue
        gpu = catalog.gpu_of(inst)
        for tp in (1, 2, 4, 8):
            if tp > inst.gpus or inst.gpus % tp:
                continue
            if dep.tensor_parallel_size and tp != dep.tensor_parallel_size:
                continue
            out.append(_evaluate(model, dep, inst, gpu, tp, ctx, shape))
    if not out:
        raise UserError("no instance type matches the gpus / instanceType / tensorParallelSize given",
                        path=f"{where.rstrip('.') or 'request'}")
    return out


def _rank(c: Candidate) -> tuple[float, float, int]:
    lat = c.latency.p95_e2e_seconds if c.latency else math.inf
    return (c.hourly_usd if c.hourly_usd is not None else math.inf, lat, c.tensor_parallel_size)


def place(
    dep: ModelDeployment, catalog: Catalog, where: str = "", shape: TokenShape | None = None,
) -> Placement:
    """Choose the cheapest (whole-node on-demand $/h) candidate that meets memory, TP and the SLA."""
    model = catalog.model(dep.model)
    cands = candidates(dep, catalog, where, shape)
    feasible = sorted((c for c in cands if c.feasible), key=_rank)
    if not feasible:
        raise NoPlacement(dep, cands)
    best = feasible[0]
    assert best.memory is not None and best.latency is not None
    inst = catalog.instances[best.instance_type]
    gpu = catalog.gpus[best.gpu_type]
    ctx = resolve_context(model, dep, where)
    rejected = [
        c if not c.feasible else c.model_copy(update={
            "reason": f"fits, but ${c.hourly_usd:,.2f}/h vs ${best.hourly_usd:,.2f}/h"
            if c.hourly_usd != best.hourly_usd else
            f"fits at the same price, predicted p95 {c.latency.p95_e2e_seconds if c.latency else 0:.2f} s "
            f"vs {best.latency.p95_e2e_seconds:.2f} s"
        })
        for c in sorted(cands, key=_rank) if c is not best
    ]
    max_nodes = _nodes_for(dep, dep.max_replicas, best.replicas_per_node)
    batch = dep.sla.concurrency_per_replica
    explanation = [
        f"{dep.model} in {dep.quantization.value}: {weight_bytes(model, dep.quantization) / GIB:.1f} GiB of weights; "
        f"TP {best.tensor_parallel_size} puts {best.memory.weights_gib:.1f} GiB on each {gpu.name} "
        f"({best.memory.gpu_total_gib:.1f} GiB).",
        f"KV cache {best.memory.kv_cache_gib:.1f} GiB/GPU = {best.kv_cache_tokens:,} tokens: "
        f"{best.max_concurrency} sequences at the full {ctx:,}-token context, {best.workload_concurrency} "
        f"at the {dep.sla.workload.value} workload's mean length; SLA batch {batch}.",
        f"Predicted at batch {batch}: p95 {best.latency.p95_e2e_seconds:.2f} s end-to-end "
        f"(SLA {dep.sla.p95_e2e_seconds:g} s), p95 TTFT {best.latency.p95_ttft_seconds:.2f} s, "
        f"{best.latency.output_tokens_per_second:,.0f} output tok/s per replica.",
        f"Cheapest of {len(feasible)} feasible candidates: {dep.replicas} replica(s) x TP {best.tensor_parallel_size} "
        f"on {best.nodes} x {inst.type} ({inst.gpus} GPUs each) = ${best.hourly_usd:,.2f}/h on-demand.",
    ]
    warnings: list[str] = []
    packed = math.ceil(dep.replicas / best.replicas_per_node)
    if best.nodes > packed:
        explanation.append(
            f"Availability over packing: {dep.replicas} replicas spread over {best.nodes} nodes in different AZs "
            f"although {packed} node(s) would hold them; set spreadAcrossZones: false to pack."
        )
    if best.idle_gpus:
        warnings.append(f"{best.idle_gpus} of {best.nodes * inst.gpus} GPUs idle (paid for, unused).")
    if best.max_concurrency < batch:
        warnings.append(
            f"Only {best.max_concurrency} sequences fit if every request used the full {ctx:,}-token context; "
            f"beyond that vLLM queues or preempts."
        )
    if dep.quantization is Quantization.FP8 and not gpu.native_fp8:
        warnings.append(f"{gpu.name} has no native FP8: vLLM runs FP8 weights as W8A16 (Marlin), compute at bf16 rate.")
    if best.memory.headroom_gib < 0.3:
        warnings.append(
            f"Only {best.memory.headroom_gib:.2f} GiB outside gpu_memory_utilization for CUDA graphs; "
            f"lower gpuMemoryUtilization if startup runs out of memory."
        )
    return Placement(
        name=dep.name,
        model=model.id,
        hf_repo=(model.quantizations[dep.quantization].repo or model.hf_repo),
        quantization=dep.quantization,
        kv_cache_dtype=dep.kv_cache_dtype,
        instance_type=inst.type,
        gpu_type=gpu.id,
        gpus_per_node=inst.gpus,
        tensor_parallel_size=best.tensor_parallel_size,
        replicas=dep.replicas,
        max_replicas=dep.max_replicas,
        replicas_per_node=best.replicas_per_node,
        nodes=best.nodes,
        max_nodes=max_nodes,
        idle_gpus=best.idle_gpus,
        max_model_len=ctx,
        max_num_seqs=batch,
        max_num_batched_tokens=max(default_batch_tokens(gpu), batch),
        gpu_memory_utilization=dep.gpu_memory_utilization,
        weights_gib=weight_bytes(model, dep.quantization) / GIB,
        memory=best.memory,
        kv_cache_tokens=best.kv_cache_tokens,
        max_concurrency=best.max_concurrency,
        workload_concurrency=best.workload_concurrency,
        predicted_p95_seconds=best.latency.p95_e2e_seconds,
        predicted_p95_ttft_seconds=best.latency.p95_ttft_seconds,
        predicted_mean_seconds=best.latency.mean_e2e_seconds,
        output_tokens_per_second=best.latency.output_tokens_per_second,
        hourly_usd=best.hourly_usd or 0.0,
        explanation=explanation,
        warnings=warnings,
        rejected=rejected,
    )


# Weight formats from most to least faithful; `size` without --quant walks them in this order.
FIDELITY_ORDER = (Quantization.BF16, Quantization.FP16, Quantization.FP8, Quantization.INT8,
                  Quantization.AWQ, Quantization.GPTQ)


def place_most_faithful(dep: ModelDeployment, catalog: Catalog) -> Placement:
    """Place in the most faithful weight format that can meet the SLA (bf16 first, int4 last).

    Raises NoPlacement with the candidates of the most faithful format when none can.
    """
    model = catalog.model(dep.model)
    formats = [q for q in FIDELITY_ORDER if q in model.quantizations]
    # fp16 only when there is no bf16: same size and speed, so it would add nothing.
    if Quantization.BF16 in formats and Quantization.FP16 in formats:
        formats.remove(Quantization.FP16)
    first_failure: NoPlacement | None = None
    skipped: list[str] = []
    for q in formats:
        try:
            p = place(dep.model_copy(update={"quantization": q}), catalog)
        except NoPlacement as e:
            first_failure = first_failure or e
            best = min((c for c in e.candidates if c.latency), key=lambda c: c.latency.p95_e2e_seconds,  # type: ignore[union-attr]
                       default=None)
            skipped.append(f"{q.value}: no candidate meets the SLA"
                           + (f" (best predicted p95 {best.latency.p95_e2e_seconds:.2f} s on "  # type: ignore[union-attr]
                              f"{best.instance_type} TP {best.tensor_parallel_size})" if best else ""))
            continue
        if skipped:
            note = f"Chose {q.value} because more faithful formats cannot meet the SLA: " + "; ".join(skipped) + "."
            return p.model_copy(update={"explanation": [note, *p.explanation]})
        return p
    assert first_failure is not None
    raise first_failure
