"""Grafana dashboards, one per served model, as plain JSON-ready dicts.

Pure functions; components/monitoring.py provisions the result (ConfigMap for the in-cluster
Grafana sidecar, or the Grafana API). Panel queries reuse the PromQL builders of
:mod:`servekit.alert_rules`, so a panel shows what the alert evaluates, and SLA numbers come
from the stack's SLA: the p95 targets, error budget and batch size are drawn as threshold lines.

Queries use Grafana's ``$__rate_interval`` and a ``datasource`` variable; nothing else is templated
(the model name is fixed per dashboard), so a query parses as PromQL once Grafana substitutes it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from servekit.alert_rules import (
    DCGM_FB_FREE,
    DCGM_FB_USED,
    DCGM_GPU_UTIL,
    DCGM_WORKLOAD_NAMESPACE_LABEL,
    DEFAULT_TUNING,
    E2E_LATENCY,
    GENERATION_TOKENS,
    KV_CACHE_USAGE,
    LATENCY_SLO_OBJECTIVE,
    MODEL_LABEL,
    PROMPT_TOKENS,
    REQUEST_SUCCESS,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    TPOT,
    TTFT,
    RuleTuning,
    error_ratio_expr,
    latency_slos,
    pinned_histogram_buckets,
    preemption_rate_expr,
    quantile_expr,
    slow_ratio_expr,
    token_rate_expr,
)
from servekit.spec import DeploymentSpec, ModelDeployment

Dashboard = dict[str, Any]
Panel = dict[str, Any]

RATE = "$__rate_interval"  # Grafana: at least four scrape intervals, so rate() never sees one sample
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
_UID_MAX = 40  # Grafana's limit on dashboard uids


def dashboard_uid(stack: str, model: str) -> str:
    """Stable uid: readable when it fits Grafana's 40 characters, else shortened with a hash."""
    raw = re.sub(r"[^A-Za-z0-9_-]", "-", f"servekit-{stack}-{model}")
    if len(raw) <= _UID_MAX:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    return f"{raw[: _UID_MAX - 11]}-{digest}"


def _target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True}


def _timeseries(
    title: str,
    description: str,
    targets: Sequence[tuple[str, str]],
    *,
    unit: str,
    threshold: float | None = None,
    threshold_label: str | None = None,
    max_: float | None = None,
) -> Panel:
    """A time-series panel; ``threshold`` is drawn as a red constant line (the SLA, when there is one)."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    defaults: dict[str, Any] = {
        "unit": unit,
        "min": 0,
        "thresholds": {"mode": "absolute", "steps": steps},
        "custom": {"thresholdsStyle": {"mode": "line" if threshold is not None else "off"}},
    }
    if max_ is not None:
        defaults["max"] = max_
    if threshold_label:
        description = f"{description} Red line: {threshold_label}."
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [_target(chr(ord("A") + i), expr, legend) for i, (expr, legend) in enumerate(targets)],
    }


def _row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def _layout(panels: Sequence[Panel]) -> list[Panel]:
    """Two panels per line, rows across the width; ids in reading order."""
    out: list[Panel] = []
    x = y = 0
    for i, p in enumerate(panels, start=1):
        p = {"id": i, **p}
        if p["type"] == "row":
            if x:
                x, y = 0, y + 8
            p["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            y += 1
        else:
            p["gridPos"] = {"h": 8, "w": 12, "x": x, "y": y}
            x, y = (12, y) if x == 0 else (0, y + 8)
        out.append(p)
    return out


def _s(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def dashboard(
    spec: DeploymentSpec,
    model: ModelDeployment,
    *,
    histogram_buckets: Mapping[str, Sequence[float]] | None = None,
    tuning: RuleTuning = DEFAULT_TUNING,
) -> Dashboard:
    """The Grafana dashboard for one model of a stack."""
    buckets = pinned_histogram_buckets() if histogram_buckets is None else histogram_buckets
    m, sla = model.name, model.sla
    sel = f'{{{MODEL_LABEL}="{m}"}}'
    gpu_sel = f'{{{DCGM_WORKLOAD_NAMESPACE_LABEL}="{m}"}}'
    slos = {s.key: s for s in latency_slos(model, buckets)}
    e2e = slos["e2e"]
    budget = 1 - LATENCY_SLO_OBJECTIVE

    def quantiles(metric: str, qs: Sequence[float]) -> list[tuple[str, str]]:
        return [(quantile_expr(metric, m, q, RATE), f"p{q * 100:g}") for q in qs]

    slow_targets = [
        (slow_ratio_expr(s.metric, m, s.bucket, RATE), f"{s.title} above {_s(s.bucket)}") for s in slos.values()
    ]
    panels: list[Panel] = [
        _row("SLA"),
        _timeseries(
            "End-to-end latency",
            f"Percentiles over all replicas of {m}, estimated from vLLM's histogram.",
            quantiles(E2E_LATENCY, (0.5, 0.9, 0.95, 0.99)),
            unit="s",
            threshold=sla.p95_e2e_seconds,
            threshold_label=f"SLA p95 <= {_s(sla.p95_e2e_seconds)} at {sla.concurrency_per_replica} "
            "concurrent requests per replica",
        ),
        _timeseries(
            "Time to first token",
            f"Percentiles over all replicas of {m}.",
            quantiles(TTFT, (0.5, 0.95, 0.99)),
            unit="s",
            threshold=sla.p95_ttft_seconds,
            threshold_label=f"SLA p95 TTFT <= {_s(sla.p95_ttft_seconds)}" if sla.p95_ttft_seconds else None,
        ),
        _timeseries(
            "Slow requests (latency SLO bad events)",
            f"Share of requests above the vLLM bucket bound that stands for the SLA ({e2e.bucket_note}).",
            slow_targets,
            unit="percentunit",
            threshold=budget,
            threshold_label=f"the {budget * 100:g} % error budget of a p95 SLO",
        ),
        _timeseries(
            "Failed requests",
            "Engine errors and queue-limit rejections over all requests; client aborts excluded.",
            [(error_ratio_expr(m, RATE), "failed")],
            unit="percentunit",
            threshold=sla.max_error_rate if sla.max_error_rate > 0 else None,
            threshold_label=f"SLA max error rate {sla.max_error_rate * 100:g} %" if sla.max_error_rate else None,
        ),
        _row("Throughput"),
        _timeseries(
            "Requests finished",
            "Per second, by vLLM's finish reason.",
            [(f"sum by (finished_reason) (rate({REQUEST_SUCCESS}{sel}[{RATE}]))", "{{finished_reason}}")],
            unit="reqps",
        ),
        _timeseries(
            "Tokens",
            "Prompt (prefill) and generated (decode) tokens per second, all replicas.",
            [
                (token_rate_expr(PROMPT_TOKENS, m, RATE), "prompt"),
                (token_rate_expr(GENERATION_TOKENS, m, RATE), "generated"),
            ],
            unit="short",
        ),
        _timeseries(
            "Time per output token",
            "Per request: (end-to-end - TTFT) / (output tokens - 1).",
            quantiles(TPOT, (0.5, 0.95)),
            unit="s",
        ),
        _row("Engine"),
        _timeseries(
            "KV-cache usage",
            "Per replica and engine; vLLM fills it by design, a cache stuck full preempts.",
            [(f"max by (pod, engine) ({KV_CACHE_USAGE}{sel})", "{{pod}} engine {{engine}}")],
            unit="percentunit",
            max_=1,
            threshold=tuning.kv_cache_usage_high,
            threshold_label="the KV-cache alert threshold",
        ),
        _timeseries(
            "Queue",
            "Requests in the running batch and waiting, busiest replica.",
            [
                (f"max({REQUESTS_RUNNING}{sel})", "running (busiest replica)"),
                (f"max({REQUESTS_WAITING}{sel})", "waiting (busiest replica)"),
                (f"sum({REQUESTS_WAITING}{sel})", "waiting (all replicas)"),
            ],
            unit="short",
            threshold=sla.concurrency_per_replica,
            threshold_label=f"the SLA's batch of {sla.concurrency_per_replica} per replica",
        ),
        _timeseries(
            "Preemptions",
            "Running requests evicted from the KV cache per second; each one recomputes its prefill.",
            [(preemption_rate_expr(m, RATE), "preemptions/s")],
            unit="short",
        ),
        _row("GPU"),
        _timeseries(
            "GPU utilization",
            f"DCGM exporter, GPUs allocated to pods in namespace {m}.",
            [(f"max by (Hostname, gpu) ({DCGM_GPU_UTIL}{gpu_sel})", "{{Hostname}} GPU {{gpu}}")],
            unit="percent",
            max_=100,
        ),
        _timeseries(
            "GPU memory used",
            "Framebuffer used over used + free; vLLM reserves its share at start.",
            [
                (
                    f"max by (Hostname, gpu) ({DCGM_FB_USED}{gpu_sel} / "
                    f"({DCGM_FB_USED}{gpu_sel} + {DCGM_FB_FREE}{gpu_sel}))",
                    "{{Hostname}} GPU {{gpu}}",
                )
            ],
            unit="percentunit",
            max_=1,
            threshold=model.gpu_memory_utilization,
            threshold_label=f"gpuMemoryUtilization {model.gpu_memory_utilization:g}",
        ),
    ]
    return {
        "uid": dashboard_uid(spec.stack, m),
        "title": f"servekit {spec.stack} / {m}",
        "description": f"vLLM serving {model.model} as {m} (stack {spec.stack}); generated by servekit.",
        "tags": ["servekit", "vllm", f"stack:{spec.stack}", f"model:{m}"],
        "timezone": "utc",
        "editable": False,  # provisioned as code: edit the generator, not the dashboard
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "links": [],
        "panels": _layout(panels),
    }


def dashboards(
    spec: DeploymentSpec,
    *,
    histogram_buckets: Mapping[str, Sequence[float]] | None = None,
    tuning: RuleTuning = DEFAULT_TUNING,
) -> dict[str, Dashboard]:
    """One dashboard per model, keyed by model name."""
    buckets = pinned_histogram_buckets() if histogram_buckets is None else histogram_buckets
    return {md.name: dashboard(spec, md, histogram_buckets=buckets, tuning=tuning) for md in spec.models}


def dashboard_json(board: Dashboard) -> str:
    """The JSON Grafana provisions (stable key order, so a diff shows real changes)."""
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def iter_panels(board: Dashboard) -> Iterator[Panel]:
    """Every panel, including panels nested in collapsed rows."""
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])


def panel_queries(board: Dashboard) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` for every query of every panel."""
    return [(p["title"], t["expr"]) for p in iter_panels(board) for t in p.get("targets", [])]
