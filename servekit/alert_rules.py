"""Prometheus recording and alerting rules generated from each model's SLA.

Pure functions: a :class:`~servekit.spec.DeploymentSpec` in, Prometheus rule-group dicts out.
The same dicts feed ``servekit rules`` (rule files), the PrometheusRule resources (in-cluster)
and the AMP rule-groups namespace, so all three always agree.

Groups: one per model (``servekit-<stack>-model-<name>``: recording rules first, then the
alerts that read them, so one evaluation sees fresh values), one for GPU health from the DCGM
exporter, one for the model pods and nodes from kube-state-metrics.

Every SLA threshold comes from the stack file; nothing SLA-shaped is a literal here. Operational
thresholds with no SLA behind them (KV-cache fill, GPU idle) live in :class:`RuleTuning`.

The latency SLO behind "p95 <= T" is "95 % of requests finish within T", so the error budget is
5 % of requests. A request counts as slow when it lands above the histogram bucket ``le=B`` where
B is the smallest of vLLM's bucket bounds >= T (a histogram cannot split a bucket). When T is not
a bound, requests between T and B count as fast: the burn-rate alerts are then lenient by that
gap, say so in their ``slo_bucket`` annotation, and :func:`rule_notes` reports it. The p95 alerts
(histogram_quantile, which interpolates inside the bucket) still compare against T itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from servekit.errors import EnvironmentMissing, UserError
from servekit.spec import DeploymentSpec, ModelDeployment

RuleDict = dict[str, Any]
RuleGroup = dict[str, Any]

# --------------------------------------------------------------------------- vLLM metric names
# From the pinned vLLM (0.33.0, vllm/v1/metrics/loggers.py). Counters carry prometheus_client's
# ``_total`` suffix as exposed on /metrics. tests/test_alert_rules.py checks every ``vllm:`` name
# used here against servekit/data/vllm-metrics.json, generated from the installed package.
MODEL_LABEL = "model_name"  # vLLM sets it to --served-model-name, which the kit sets to the model's name
E2E_LATENCY = "vllm:e2e_request_latency_seconds"
TTFT = "vllm:time_to_first_token_seconds"
TPOT = "vllm:request_time_per_output_token_seconds"  # per request: (e2e - ttft) / (output tokens - 1)
REQUEST_SUCCESS = "vllm:request_success_total"  # label finished_reason: stop|length|abort|error|repetition
ADMISSION_REJECTIONS = "vllm:admission_rejections_total"  # queue-limit rejections, never reach the engine
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"  # 0..1 despite the name
REQUESTS_WAITING = "vllm:num_requests_waiting"
REQUESTS_RUNNING = "vllm:num_requests_running"
PREEMPTIONS = "vllm:num_preemptions_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
# finished_reason values that mean the server failed the request (vLLM maps "error" to HTTP 500).
# "abort" is the client hanging up and "repetition" a model behaviour, so neither counts.
ERROR_FINISH_REASONS = ("error",)

# DCGM exporter (default counters) and kube-state-metrics.
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent, 0..100
DCGM_FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
DCGM_FB_FREE = "DCGM_FI_DEV_FB_FREE"  # MiB
DCGM_XID = "DCGM_FI_DEV_XID_ERRORS"  # gauge: the last XID code seen, 0 when none
DCGM_GPU_LABELS = ("Hostname", "gpu", "UUID")
# dcgm-exporter's pod mapping labels each GPU with the pod using it. The scrape must keep them
# (honorLabels: true), otherwise Prometheus renames them exported_namespace / exported_pod.
DCGM_WORKLOAD_NAMESPACE_LABEL = "namespace"
KSM_RESTARTS = "kube_pod_container_status_restarts_total"
KSM_WAITING_REASON = "kube_pod_container_status_waiting_reason"
KSM_POD_PHASE = "kube_pod_status_phase"
KSM_NODE_CONDITION = "kube_node_status_condition"

# --------------------------------------------------------------------------- SLO arithmetic

# "p95 <= T" means 95 % of requests within T: 5 % of requests are the error budget.
LATENCY_SLO_OBJECTIVE = 0.95


@dataclass(frozen=True)
class BurnTier:
    """One multi-window burn-rate alert: both windows must burn faster than ``factor``."""

    long_window: str
    short_window: str
    factor: float
    for_: str
    severity: str


# The Google SRE Workbook (ch. 5, "Alerting on SLOs") tiers for a 30-day budget: 2 % of it gone
# in 1 h or 5 % in 6 h pages; 10 % in 1 d or in 3 d opens a ticket. The short window (1/12 of
# the long one) makes the alert stop soon after the burn stops.
BURN_TIERS: tuple[BurnTier, ...] = (
    BurnTier("1h", "5m", 14.4, "2m", "critical"),
    BurnTier("6h", "30m", 6.0, "15m", "critical"),
    BurnTier("1d", "2h", 3.0, "1h", "warning"),
    BurnTier("3d", "6h", 1.0, "1h", "warning"),
)
SLO_WINDOWS: tuple[str, ...] = tuple(
    dict.fromkeys(w for t in BURN_TIERS for w in (t.short_window, t.long_window))
)


@dataclass(frozen=True)
class RuleTuning:
    """Operational thresholds that no SLA states; defaults suit a vLLM fleet, override per stack."""

    # Repo-relative until the team publishes its runbooks; each alert links <base>#<alertname lowercased>.
    runbook_base_url: str = "docs/runbooks.md"
    rate_window: str = "5m"  # for p95s, error ratio and preemption rate
    sla_for: str = "10m"  # p95 and error-ratio alerts: ride out a short spike, catch a real breach
    kv_cache_usage_high: float = 0.95  # vLLM fills its cache by design; only "stuck full" matters
    kv_cache_for: str = "15m"
    queue_for: str = "10m"
    preemption_for: str = "15m"
    metrics_absent_for: str = "15m"  # longer than a cold start that has its weights cached
    gpu_memory_headroom: float = 0.03  # above the largest gpuMemoryUtilization in the stack
    gpu_memory_for: str = "15m"
    gpu_idle_util_percent: float = 5.0
    gpu_idle_for: str = "6h"
    node_not_ready_for: str = "5m"
    pod_pending_for: str = "15m"  # a GPU pod pending this long means no capacity
    crashloop_for: str = "15m"


DEFAULT_TUNING = RuleTuning()


@dataclass(frozen=True)
class LatencySlo:
    """One latency objective of a model: p95 of ``metric`` at most ``threshold`` seconds."""

    key: str  # "e2e" | "ttft": used in record names, alert names and labels
    title: str
    metric: str
    threshold: float
    bucket: float  # the smallest vLLM bucket bound >= threshold

    @property
    def exact(self) -> bool:
        return math.isclose(self.bucket, self.threshold, rel_tol=1e-9)

    @property
    def bucket_note(self) -> str:
        if self.exact:
            return f"slow = above {_human(self.bucket)}, which is a vLLM bucket bound (the SLA exactly)"
        return (
            f"the SLA is {_human(self.threshold)} but the nearest vLLM bucket bound at or above it is "
            f"{_human(self.bucket)}: requests between the two count as fast, so this burn-rate alert is "
            f"lenient by that gap; the p95 alert still compares against {_human(self.threshold)}"
        )


# --------------------------------------------------------------------------- bucket facts


def le_label(bound: float) -> str:
    """The ``le`` label value prometheus_client (and Prometheus 3's normaliser) writes for ``bound``.

    Python's float repr (``1.0``, ``0.25``) matches Go's formatting below 1e6, where vLLM's
    time buckets all are; above that Go switches to exponent form, which we refuse to guess.
    """
    b = float(bound)
    if not (0 < b < 1e6) or "e" in repr(b):
        raise ValueError(f"bucket bound {bound!r} is outside the range whose le label we can spell")
    return repr(b)


def pinned_histogram_buckets() -> dict[str, tuple[float, ...]]:
    """Histogram bucket bounds of the pinned vLLM, by metric name, from servekit/data/vllm-metrics.json."""
    try:
        text = resources.files("servekit").joinpath("data/vllm-metrics.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnvironmentMissing(
            "servekit/data/vllm-metrics.json is missing: it is generated from the pinned vllm package"
        ) from None
    return _histograms_from_metrics_json(json.loads(text))


def _histograms_from_metrics_json(data: Any) -> dict[str, tuple[float, ...]]:
    """``{"metrics": {family: {"type": "histogram", "buckets": [...]}}}`` -> family -> finite bounds."""
    try:
        return {
            name: tuple(float(b) for b in entry["buckets"])
            for name, entry in data["metrics"].items()
            if entry["type"] == "histogram"
        }
    except (KeyError, TypeError) as e:
        raise EnvironmentMissing(f"servekit/data/vllm-metrics.json has an unexpected layout ({e!r})") from None


def slo_bucket(threshold: float, buckets: Sequence[float], *, metric: str) -> float:
    """The smallest finite bucket bound >= ``threshold`` (the only "le" that can count slow requests)."""
    finite = sorted(b for b in buckets if math.isfinite(b))
    for b in finite:
        if b >= threshold or math.isclose(b, threshold, rel_tol=1e-9):
            return b
    raise UserError(
        f"{metric} has no bucket bound at or above {threshold:g} s, so a p95 SLO at that threshold "
        "cannot be measured",
        given=threshold,
        allowed=f"thresholds up to {finite[-1]:g} s" if finite else None,
    )


def latency_slos(
    model: ModelDeployment, histogram_buckets: Mapping[str, Sequence[float]]
) -> list[LatencySlo]:
    """The model's latency objectives: end-to-end always, TTFT when the SLA states one."""
    wanted = [("e2e", "end-to-end latency", E2E_LATENCY, model.sla.p95_e2e_seconds)]
    if model.sla.p95_ttft_seconds is not None:
        wanted.append(("ttft", "time to first token", TTFT, model.sla.p95_ttft_seconds))
    out = []
    for key, title, metric, threshold in wanted:
        if metric not in histogram_buckets:
            raise EnvironmentMissing(f"no bucket bounds known for {metric} (vllm-metrics.json out of date?)")
        bucket = slo_bucket(threshold, histogram_buckets[metric], metric=metric)
        out.append(LatencySlo(key, title, metric, threshold, bucket))
    return out


# --------------------------------------------------------------------------- PromQL builders
# Shared with servekit.dashboards so a panel shows exactly what an alert evaluates. ``window`` is
# a PromQL range ("5m") or a Grafana macro ("$__rate_interval").


def _sel(model: str, **extra: str) -> str:
    matchers = [f'{MODEL_LABEL}="{model}"', *(f'{k}="{v}"' for k, v in extra.items())]
    return "{" + ",".join(matchers) + "}"


def quantile_expr(metric: str, model: str, q: float, window: str) -> str:
    """q-quantile of a vLLM histogram for one model, over all its replicas and engines."""
    return (
        f"histogram_quantile({q}, sum by ({MODEL_LABEL}, le) "
        f"(rate({metric}_bucket{_sel(model)}[{window}])))"
    )


def slow_ratio_expr(metric: str, model: str, bucket: float, window: str) -> str:
    """Fraction of requests above the ``le=bucket`` bucket: the latency SLO's bad-event ratio."""
    return (
        f"1 - (sum by ({MODEL_LABEL}) (rate({metric}_bucket{_sel(model, le=le_label(bucket))}[{window}]))"
        f" / sum by ({MODEL_LABEL}) (rate({metric}_count{_sel(model)}[{window}])))"
    )


def _sum_rate(metric: str, model: str, window: str, **extra: str) -> str:
    return f"sum by ({MODEL_LABEL}) (rate({metric}{_sel(model, **extra)}[{window}]))"


def error_ratio_expr(model: str, window: str) -> str:
    """Failed / all requests: engine errors plus queue-limit rejections over everything that arrived.

    vLLM pre-creates its rejection counter, but ``(A + B) or A`` keeps the ratio alive if an
    exporter drops it (a missing B would otherwise empty the sum and silence the alert).
    """
    failed = f'{MODEL_LABEL}="{model}",finished_reason=~"{"|".join(ERROR_FINISH_REASONS)}"'
    errors = f"sum by ({MODEL_LABEL}) (rate({REQUEST_SUCCESS}{{{failed}}}[{window}]))"
    finished = _sum_rate(REQUEST_SUCCESS, model, window)
    rejected = _sum_rate(ADMISSION_REJECTIONS, model, window)
    return f"(({errors} + {rejected}) or {errors}) / (({finished} + {rejected}) or {finished})"


def request_rate_expr(model: str, window: str) -> str:
    return _sum_rate(REQUEST_SUCCESS, model, window)


def token_rate_expr(metric: str, model: str, window: str) -> str:
    return _sum_rate(metric, model, window)


def gauge_max_expr(metric: str, model: str) -> str:
    """Worst replica (and engine) of a per-engine gauge."""
    return f"max by ({MODEL_LABEL}) ({metric}{_sel(model)})"


def preemption_rate_expr(model: str, window: str) -> str:
    return _sum_rate(PREEMPTIONS, model, window)


def gpu_memory_ratio_expr(selector: str = "") -> str:
    """Framebuffer in use over usable framebuffer, per GPU."""
    by = ", ".join(DCGM_GPU_LABELS)
    return f"max by ({by}) ({DCGM_FB_USED}{selector} / ({DCGM_FB_USED}{selector} + {DCGM_FB_FREE}{selector}))"


def model_namespace_selector(model: str) -> str:
    return f'{{{DCGM_WORKLOAD_NAMESPACE_LABEL}="{model}"}}'


# --------------------------------------------------------------------------- record names


def record_name(metric: str, what: str) -> str:
    """``model_name:<metric>:<what>`` (Prometheus' level:metric:operations naming)."""
    return f"{MODEL_LABEL}:{metric.replace(':', '_')}:{what}"


def p95_record(metric: str, window: str = DEFAULT_TUNING.rate_window) -> str:
    return record_name(metric, f"p95_rate{window}")


def slow_ratio_record(metric: str, window: str) -> str:
    return record_name(metric, f"slow_ratio_rate{window}")


def error_ratio_record(window: str = DEFAULT_TUNING.rate_window) -> str:
    return record_name("vllm:request_errors", f"ratio_rate{window}")


GPU_MEMORY_RECORD = "gpu:dcgm_fb_used:ratio"


# --------------------------------------------------------------------------- rule groups


def _human(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def _num(x: float) -> str:
    """A PromQL number literal that round-trips (no float noise such as 0.7200000000000001)."""
    return repr(round(float(x), 12))


def _record(name: str, expr: str, labels: Mapping[str, str] | None = None) -> RuleDict:
    rule: RuleDict = {"record": name, "expr": expr}
    if labels:
        rule["labels"] = dict(labels)
    return rule


def _alert(
    name: str,
    expr: str,
    for_: str,
    labels: Mapping[str, str],
    summary: str,
    description: str,
    tuning: RuleTuning,
    **extra_annotations: str,
) -> RuleDict:
    rule: RuleDict = {"alert": name, "expr": expr}
    if for_ not in ("", "0s", "0m"):
        rule["for"] = for_
    rule["labels"] = dict(labels)
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{tuning.runbook_base_url}#{name.lower()}",
        **extra_annotations,
    }
    return rule


def _base_labels(spec: DeploymentSpec, severity: str) -> dict[str, str]:
    return {
        "severity": severity,
        "stack": spec.stack,
        "environment": spec.environment,
        "owner": spec.tags.owner,
    }


def group_name(spec: DeploymentSpec, part: str) -> str:
    return f"servekit-{spec.stack}-{part}"


def model_group(
    spec: DeploymentSpec,
    model: ModelDeployment,
    histogram_buckets: Mapping[str, Sequence[float]],
    tuning: RuleTuning = DEFAULT_TUNING,
) -> RuleGroup:
    """Recording rules and SLA alerts for one served model."""
    m, sla, w = model.name, model.sla, tuning.rate_window
    slos = latency_slos(model, histogram_buckets)
    sel = _sel(m)
    records: list[RuleDict] = []
    alerts: list[RuleDict] = []
    # The expressions already yield model_name; stating it on the rule too keeps two models'
    # rules distinct to promtool's duplicate-rule lint and lets Alertmanager route on it.
    own = {MODEL_LABEL: m}

    def base(severity: str) -> dict[str, str]:
        return _base_labels(spec, severity) | own

    def record(name: str, expr: str) -> RuleDict:
        return _record(name, expr, own)

    # p95s, as the SLA states them, plus TPOT (no SLA, shown and recorded for diagnosis).
    for metric in (E2E_LATENCY, TTFT, TPOT):
        records.append(record(p95_record(metric, w), quantile_expr(metric, m, 0.95, w)))
    # Bad-event ratios for every burn-rate window.
    for slo in slos:
        for window in SLO_WINDOWS:
            records.append(
                record(slow_ratio_record(slo.metric, window), slow_ratio_expr(slo.metric, m, slo.bucket, window))
            )
    records += [
        record(error_ratio_record(w), error_ratio_expr(m, w)),
        record(record_name("vllm:requests", f"rate{w}"), request_rate_expr(m, w)),
        record(record_name(KV_CACHE_USAGE, "max"), gauge_max_expr(KV_CACHE_USAGE, m)),
        record(record_name(REQUESTS_WAITING, "max"), gauge_max_expr(REQUESTS_WAITING, m)),
        record(record_name(PREEMPTIONS, f"rate{w}"), preemption_rate_expr(m, w)),
    ]

    for slo in slos:
        title = "E2eLatency" if slo.key == "e2e" else "Ttft"
        alerts.append(
            _alert(
                f"Servekit{title}P95AboveSla",
                f"{p95_record(slo.metric, w)}{sel} > {_num(slo.threshold)}",
                tuning.sla_for,
                base("critical") | {"slo": f"{slo.key}-latency"},
                f"{m}: p95 {slo.title} above the SLA of {_human(slo.threshold)}",
                f"The p95 {slo.title} of model {m} over {w} (all replicas, interpolated within vLLM's "
                f"histogram buckets) has stayed above the SLA of {_human(slo.threshold)} for "
                f"{tuning.sla_for}. The SLA holds at {sla.concurrency_per_replica} concurrent requests "
                "per replica: check the queue, KV-cache and preemption panels before adding replicas.",
                tuning,
            )
        )
        for tier in BURN_TIERS:
            threshold = f"({_num(tier.factor)} * {_num(1 - LATENCY_SLO_OBJECTIVE)})"
            expr = (
                f"{slow_ratio_record(slo.metric, tier.long_window)}{sel} > {threshold}\n"
                f"and\n"
                f"{slow_ratio_record(slo.metric, tier.short_window)}{sel} > {threshold}"
            )
            budget_share = tier.factor * _window_days(tier.long_window) / 30 * 100
            alerts.append(
                _alert(
                    f"Servekit{title}BudgetBurn",
                    expr,
                    tier.for_,
                    base(tier.severity)
                    | {
                        "slo": f"{slo.key}-latency",
                        "long_window": tier.long_window,
                        "short_window": tier.short_window,
                    },
                    f"{m}: {slo.title} error budget burning {tier.factor:g}x too fast",
                    f"More than {tier.factor * (1 - LATENCY_SLO_OBJECTIVE) * 100:g} % of requests to model "
                    f"{m} were slower than {_human(slo.bucket)} over both {tier.long_window} and "
                    f"{tier.short_window}. The SLO allows {(1 - LATENCY_SLO_OBJECTIVE) * 100:g} % "
                    f"(p95 <= {_human(slo.threshold)}); at this rate {budget_share:g} % of a 30-day "
                    f"budget goes in {tier.long_window}.",
                    tuning,
                    slo_bucket=slo.bucket_note,
                )
            )

    if sla.max_error_rate > 0:
        err_expr = f"{error_ratio_record(w)}{sel} > {_num(sla.max_error_rate)}"
        err_text = f"above the SLA's {sla.max_error_rate * 100:g} %"
    else:  # a zero budget: any failed request breaks it
        err_expr = f"{error_ratio_record(w)}{sel} > 0"
        err_text = "above zero, which the SLA allows no room for"
    alerts.append(
        _alert(
            "ServekitErrorRateAboveSla",
            err_expr,
            tuning.sla_for,
            base("critical") | {"slo": "errors"},
            f"{m}: failed requests {err_text}",
            f"Over {w}, the share of model {m}'s requests that vLLM failed (finished_reason "
            f"{'|'.join(ERROR_FINISH_REASONS)}) or rejected at a queue limit has stayed {err_text} for "
            f"{tuning.sla_for}. Client aborts do not count.",
            tuning,
        )
    )
    alerts.append(
        _alert(
            "ServekitRequestQueueBacklog",
            f"{record_name(REQUESTS_WAITING, 'max')}{sel} >= {sla.concurrency_per_replica}",
            tuning.queue_for,
            base("warning"),
            f"{m}: a replica has a full batch of requests waiting",
            f"A replica of model {m} has had at least {sla.concurrency_per_replica} requests waiting "
            f"(the batch the SLA is sized for) for {tuning.queue_for}: each new request now waits "
            "about one whole request duration before it starts, which the SLA did not budget for. "
            "Add replicas or raise the autoscaling ceiling.",
            tuning,
        )
    )
    alerts.append(
        _alert(
            "ServekitKvCacheFull",
            f"{record_name(KV_CACHE_USAGE, 'max')}{sel} > {_num(tuning.kv_cache_usage_high)}",
            tuning.kv_cache_for,
            base("warning"),
            f"{m}: KV cache above {tuning.kv_cache_usage_high * 100:g} % for {tuning.kv_cache_for}",
            f"A replica of model {m} has kept its KV cache above {tuning.kv_cache_usage_high * 100:g} % "
            f"for {tuning.kv_cache_for}; new sequences wait or preempt running ones. Shorter max "
            "context, an fp8 KV cache or more replicas give it room.",
            tuning,
        )
    )
    alerts.append(
        _alert(
            "ServekitPreemptions",
            f"{record_name(PREEMPTIONS, f'rate{w}')}{sel} > 0",
            tuning.preemption_for,
            base("warning"),
            f"{m}: vLLM keeps preempting requests",
            f"vLLM has preempted running requests of model {m} for {tuning.preemption_for}: the KV "
            "cache cannot hold the batch the SLA promises, and every preempted request recomputes "
            "its prefill.",
            tuning,
        )
    )
    min_replicas = model.autoscaling.min_replicas if model.autoscaling else model.replicas
    if min_replicas > 0:  # a model allowed to scale to zero may legitimately have no metrics
        alerts.append(
            _alert(
                "ServekitVllmMetricsAbsent",
                f"absent({REQUESTS_RUNNING}{sel})",
                tuning.metrics_absent_for,
                base("critical"),
                f"{m}: no vLLM metrics",
                f"No replica of model {m} has exported metrics for {tuning.metrics_absent_for}: every "
                "replica is down or the scrape is broken, and the other alerts of this model are blind.",
                tuning,
            )
        )
    return {"name": group_name(spec, f"model-{m}"), "rules": records + alerts}


def gpu_group(spec: DeploymentSpec, tuning: RuleTuning = DEFAULT_TUNING) -> RuleGroup:
    """GPU health from the DCGM exporter, for every GPU the stack's Prometheus scrapes."""
    by = ", ".join(DCGM_GPU_LABELS)
    # vLLM pre-allocates gpuMemoryUtilization of each GPU, so "full" starts above the largest one.
    mem_limit = min(max(md.gpu_memory_utilization for md in spec.models) + tuning.gpu_memory_headroom, 0.99)
    namespaces = "|".join(md.name for md in spec.models)
    gpu_where = "GPU {{ $labels.gpu }} ({{ $labels.UUID }}) on node {{ $labels.Hostname }}"
    return {
        "name": group_name(spec, "gpu"),
        "rules": [
            _record(GPU_MEMORY_RECORD, gpu_memory_ratio_expr()),
            _alert(
                "ServekitGpuXidError",
                f"max by ({by}) ({DCGM_XID}) > 0",
                "",
                _base_labels(spec, "critical"),
                "GPU reported an XID error",
                f"{gpu_where} reported XID {{{{ $value }}}}. XIDs 48, 63, 64, 74, 79, 92, 94 and 95 "
                "mean failing memory, NVLink or a GPU that fell off the bus: cordon and drain the node. "
                "See https://docs.nvidia.com/deploy/xid-errors/ for the code.",
                tuning,
            ),
            _alert(
                "ServekitGpuMemoryNearlyFull",
                f"{GPU_MEMORY_RECORD} > {_num(mem_limit)}",
                tuning.gpu_memory_for,
                _base_labels(spec, "warning"),
                "GPU memory above what vLLM reserves",
                f"{gpu_where} has used more than {mem_limit * 100:g} % of its framebuffer for "
                f"{tuning.gpu_memory_for}, beyond the {max(md.gpu_memory_utilization for md in spec.models):g} "
                "vLLM is allowed: another process shares the GPU, and vLLM will run out of memory.",
                tuning,
            ),
            _alert(
                "ServekitGpuIdle",
                f"max by ({by}, {DCGM_WORKLOAD_NAMESPACE_LABEL}) "
                f'({DCGM_GPU_UTIL}{{{DCGM_WORKLOAD_NAMESPACE_LABEL}=~"{namespaces}"}}) '
                f"< {_num(tuning.gpu_idle_util_percent)}",
                tuning.gpu_idle_for,
                _base_labels(spec, "info"),
                "A model's GPU has been idle for hours",
                f"{gpu_where}, serving model {{{{ $labels.{DCGM_WORKLOAD_NAMESPACE_LABEL} }}}}, has been "
                f"below {tuning.gpu_idle_util_percent:g} % utilization for {tuning.gpu_idle_for}: "
                "it is paid for and unused. Consider fewer replicas or autoscaling.",
                tuning,
            ),
        ],
    }


def kubernetes_group(spec: DeploymentSpec, tuning: RuleTuning = DEFAULT_TUNING) -> RuleGroup:
    """Model pods (each model runs in the namespace named after it) and nodes, from kube-state-metrics."""
    ns = f'namespace=~"{"|".join(md.name for md in spec.models)}"'
    pod_where = "pod {{ $labels.namespace }}/{{ $labels.pod }}"
    return {
        "name": group_name(spec, "kubernetes"),
        "rules": [
            _alert(
                "ServekitNodeNotReady",
                f'{KSM_NODE_CONDITION}{{condition="Ready",status="true"}} == 0',
                tuning.node_not_ready_for,
                _base_labels(spec, "critical"),
                "Node not ready",
                f"Node {{{{ $labels.node }}}} has not been Ready for {tuning.node_not_ready_for}; "
                "its replicas are gone until it recovers or is replaced.",
                tuning,
            ),
            _alert(
                "ServekitVllmPodRestarted",
                f"increase({KSM_RESTARTS}{{{ns}}}[15m]) > 0",
                "",
                _base_labels(spec, "warning"),
                "vLLM container restarted",
                f"Container {{{{ $labels.container }}}} of {pod_where} restarted in the last 15 minutes; "
                "the replica reloads its weights meanwhile. Check its last state (OOMKilled, exit code).",
                tuning,
            ),
            _alert(
                "ServekitVllmPodCrashLooping",
                f'max_over_time({KSM_WAITING_REASON}{{{ns},reason="CrashLoopBackOff"}}[5m]) >= 1',
                tuning.crashloop_for,
                _base_labels(spec, "critical"),
                "vLLM pod crash-looping",
                f"Container {{{{ $labels.container }}}} of {pod_where} has been in CrashLoopBackOff for "
                f"{tuning.crashloop_for}.",
                tuning,
            ),
            _alert(
                "ServekitVllmPodPending",
                f'{KSM_POD_PHASE}{{{ns},phase="Pending"}} == 1',
                tuning.pod_pending_for,
                _base_labels(spec, "warning"),
                "vLLM pod cannot be scheduled",
                f"{pod_where} has been Pending for {tuning.pod_pending_for}: usually no GPU capacity of "
                "the chosen instance type in the subnet's zone (or the reservation ran out).",
                tuning,
            ),
        ],
    }


def rule_groups(
    spec: DeploymentSpec,
    *,
    histogram_buckets: Mapping[str, Sequence[float]] | None = None,
    tuning: RuleTuning = DEFAULT_TUNING,
) -> list[RuleGroup]:
    """All rule groups of a stack: one per model, then GPU and Kubernetes.

    ``histogram_buckets`` (metric name -> bucket bounds) defaults to the pinned vLLM's; pass
    others when the engine runs with ``--custom-histogram-buckets``.
    """
    buckets = pinned_histogram_buckets() if histogram_buckets is None else histogram_buckets
    groups = [model_group(spec, md, buckets, tuning) for md in spec.models]
    return [*groups, gpu_group(spec, tuning), kubernetes_group(spec, tuning)]


def rule_notes(
    spec: DeploymentSpec, *, histogram_buckets: Mapping[str, Sequence[float]] | None = None
) -> list[str]:
    """Human notes about the rules, today: SLA thresholds that fall between vLLM's bucket bounds."""
    buckets = pinned_histogram_buckets() if histogram_buckets is None else histogram_buckets
    return [
        f"{md.name}: p95 {slo.title} — {slo.bucket_note}"
        for md in spec.models
        for slo in latency_slos(md, buckets)
        if not slo.exact
    ]


def _window_days(window: str) -> float:
    unit = {"m": 1 / 1440, "h": 1 / 24, "d": 1.0}[window[-1]]
    return float(window[:-1]) * unit


# --------------------------------------------------------------------------- YAML


class _RuleDumper(yaml.SafeDumper):
    """Multi-line strings (the burn-rate expressions) as literal blocks, so the file reads like PromQL."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_RuleDumper.add_representer(str, _str_presenter)


def rule_file(groups: Sequence[RuleGroup]) -> str:
    """A Prometheus rule file (``groups:`` document) for ``promtool check rules`` or Prometheus."""
    body = yaml.dump(
        {"groups": list(groups)}, Dumper=_RuleDumper, sort_keys=False, width=100_000, allow_unicode=True
    )
    return "# Generated by `servekit rules` from the stack's SLA. Edit the stack file, not this.\n" + body
