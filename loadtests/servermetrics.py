"""Server cross-check: vLLM's own ``/metrics`` before, during and after the measurement window.

Reads the Prometheus text format (no client library needed for the few series used):
``vllm:num_requests_running`` / ``vllm:num_requests_waiting`` (gauges, sampled during the window)
and the ``vllm:e2e_request_latency_seconds`` / ``vllm:time_to_first_token_seconds`` histograms,
whose deltas over the window give the server's own count, mean and (bucket-interpolated) p95 to
set beside the client's exact figures.
"""

from __future__ import annotations

import math
import re
import urllib.request
from dataclasses import dataclass, field

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    out: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            continue
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        try:
            out[(m.group(1), labels)] = float(m.group(3))
        except ValueError:
            continue
    return out


def scrape(endpoint: str, headers: dict[str, str] | None = None, timeout: float = 3.0) -> Series | None:
    """The parsed ``/metrics`` of ``endpoint``, or None when it cannot be read (it is optional)."""
    req = urllib.request.Request(endpoint.rstrip("/") + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return parse(r.read().decode(errors="replace"))
    except (OSError, ValueError):
        return None


def _match(labels: frozenset[tuple[str, str]], model: str) -> bool:
    d = dict(labels)
    return d.get("model_name", model) == model


def gauge(s: Series, name: str, model: str) -> float | None:
    vals = [v for (n, lab), v in s.items() if n == name and _match(lab, model)]
    return sum(vals) if vals else None


def histogram(s: Series, name: str, model: str) -> tuple[list[tuple[float, float]], float, float]:
    """(cumulative buckets [(le, count)], sum, count) summed over the model's series."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for (n, lab), v in s.items():
        if not _match(lab, model):
            continue
        if n == f"{name}_bucket":
            le = dict(lab).get("le", "+Inf")
            key = math.inf if le == "+Inf" else float(le)
            buckets[key] = buckets.get(key, 0.0) + v
        elif n == f"{name}_sum":
            total += v
        elif n == f"{name}_count":
            count += v
    return sorted(buckets.items()), total, count


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus ``histogram_quantile``: linear interpolation inside the bucket holding rank q*N."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if math.isinf(le):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return None


@dataclass
class HistogramDelta:
    count: float
    mean_s: float | None
    p95_s: float | None


def delta(before: Series, after: Series, name: str, model: str) -> HistogramDelta:
    b0, s0, c0 = histogram(before, name, model)
    b1, s1, c1 = histogram(after, name, model)
    base = dict(b0)
    diff = [(le, c - base.get(le, 0.0)) for le, c in b1]
    n = c1 - c0
    return HistogramDelta(count=n, mean_s=(s1 - s0) / n if n > 0 else None, p95_s=quantile(diff, 0.95))


@dataclass
class ServerWindow:
    """What the server said about the window."""

    running: list[float] = field(default_factory=list)
    waiting: list[float] = field(default_factory=list)
    e2e: HistogramDelta | None = None
    ttft: HistogramDelta | None = None
    scrape_failures: int = 0

    @property
    def available(self) -> bool:
        return bool(self.running) or self.e2e is not None
