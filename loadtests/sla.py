"""The SLA verdict: PASS / FAIL / INCONCLUSIVE / INVALID, with a 95% confidence interval for p95.

Exit codes (:data:`EXIT_CODES`; 2 and 3 keep their servekit meaning: bad input, missing environment):

====  ============  ===========================================================================
code  verdict       meaning
====  ============  ===========================================================================
0     PASS          the whole 95% CI of p95 is below each SLA threshold, errors within budget
1     FAIL          the whole CI is above a threshold, or the error rate is over budget
4     INCONCLUSIVE  a CI straddles a threshold, or too few samples: measure longer
5     INVALID       the measurement cannot be trusted: client CPU saturated or its event loop
                    lagging, achieved concurrency below target, too many requests still in
                    flight at the stop, or the load generator failed
====  ============  ===========================================================================

Requests still running when the drain ends are not errors (the run cut them) but count as +inf
latencies and against the in-flight budget.

Order of the checks: a saturated client voids everything it measured (timeouts included), so it
comes first; then an error rate over budget is a FAIL (a broken server also starves concurrency,
which must not turn its FAIL into INVALID); then the other validity checks; then the percentiles.

Percentiles are exact order statistics of the raw samples (nearest rank: the ``ceil(q*n)``-th
smallest), never Locust's bucketed ones. A request that timed out or was still running at the stop
counts as a latency of +inf: it certainly exceeded the time waited, and leaving it out would
flatter p95 precisely when the server is struggling.

Confidence interval of the q-quantile from order statistics (distribution-free): with ``n``
samples and the true quantile ``xi``, the number ``B`` of samples below ``xi`` is Binomial(n, q),
and ``P(X(l) <= xi <= X(u)) = P(l <= B <= u - 1) = F(u - 1) - F(l - 1)`` with ``F`` the
Binomial(n, q) CDF. We take ``l`` = the largest rank with ``F(l - 1) <= alpha/2`` and ``u`` = the
smallest rank with ``F(u - 1) >= 1 - alpha/2``, so each tail holds at most alpha/2 and the
coverage is at least ``1 - alpha`` (exact, conservative for discrete data). When no such rank
exists within 1..n the bound is open (None): with fewer than 72 samples the upper bound of p95's
95% CI does not exist, so such a run can FAIL but never PASS. For large n the ranks approach
``n*q -/+ 1.96*sqrt(n*q*(1-q))``.
"""

from __future__ import annotations

import html
import math
from base64 import b64encode
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from loadtests.runner import RunResult
from loadtests.stream import CENSORED, INFLIGHT, Sample
from servekit.spec import SlaSpec


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"
    INVALID = "INVALID"


EXIT_CODES: dict[Verdict, int] = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INCONCLUSIVE: 4, Verdict.INVALID: 5}


# --------------------------------------------------------------------------- statistics


def nearest_rank(sorted_values: list[float], q: float) -> float | None:
    """The ceil(q*n)-th smallest value (1-based), or None for no values."""
    n = len(sorted_values)
    if n == 0:
        return None
    return sorted_values[max(1, math.ceil(q * n)) - 1]


def binomial_cdf(n: int, p: float) -> list[float]:
    """F(k) = P(B <= k) for k = 0..n, B ~ Binomial(n, p), summed in log space (no overflow)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    lp, lq, ln_fact_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    cdf, acc = [], 0.0
    for k in range(n + 1):
        acc += math.exp(ln_fact_n - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * lp + (n - k) * lq)
        cdf.append(min(acc, 1.0))
    return cdf


def quantile_ci_ranks(n: int, q: float = 0.95, confidence: float = 0.95) -> tuple[int | None, int | None]:
    """1-based ranks (l, u) of the order statistics bounding the q-quantile (see the module doc)."""
    if n <= 0:
        return None, None
    half = (1.0 - confidence) / 2.0
    cdf = binomial_cdf(n, q)
    lo = hi = None
    for r in range(1, n + 1):  # F(r-1) grows with r: keep the last rank still in the lower tail
        if cdf[r - 1] <= half:
            lo = r
        else:
            break
    for r in range(1, n + 1):
        if cdf[r - 1] >= 1.0 - half:
            hi = r
            break
    return lo, hi


def quantile_ci(sorted_values: list[float], q: float = 0.95,
                confidence: float = 0.95) -> tuple[float | None, float | None]:
    lo, hi = quantile_ci_ranks(len(sorted_values), q, confidence)
    return (sorted_values[lo - 1] if lo else None, sorted_values[hi - 1] if hi else None)


def achieved_concurrency(samples: list[Sample], t0: float, t1: float) -> float:
    """Time-weighted mean number of requests in flight over [t0, t1] (from every request's span)."""
    if t1 <= t0:
        return 0.0
    busy = sum(max(0.0, min(s.end, t1) - max(s.start, t0)) for s in samples)
    return busy / (t1 - t0)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class SlaTarget:
    p95_e2e_s: float
    concurrency: int  # total in flight: SLA batch size x replicas
    p95_ttft_s: float | None = None
    max_error_rate: float = 0.01

    @classmethod
    def from_spec(cls, sla: SlaSpec, replicas: int = 1) -> SlaTarget:
        return cls(p95_e2e_s=sla.p95_e2e_seconds, p95_ttft_s=sla.p95_ttft_seconds,
                   concurrency=sla.concurrency_per_replica * replicas, max_error_rate=sla.max_error_rate)


@dataclass(frozen=True)
class ValidityLimits:
    max_client_cpu_percent: float = 90.0  # mean over the window, busiest worker (Locust warns at 90)
    min_concurrency_ratio: float = 0.9  # achieved / target
    max_inflight_at_stop_fraction: float = 0.01
    min_loop_lag_budget_s: float = 0.025  # the lag budget is the larger of this and 1% of the SLA
    min_samples: int = 100

    def loop_lag_budget_s(self, target: SlaTarget) -> float:
        return max(self.min_loop_lag_budget_s, 0.01 * target.p95_e2e_s)


@dataclass
class Report:
    verdict: Verdict
    p95_e2e_s: float | None
    p95_ttft_s: float | None
    p95_ci_s: tuple[float | None, float | None]
    samples: int
    error_rate: float
    concurrency: int
    achieved_concurrency: float
    reasons: list[str]
    target: SlaTarget
    details: dict[str, Any] = field(default_factory=dict)
    e2e_values: list[float] = field(default_factory=list)  # sorted, finite, for the plot

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def to_json(self) -> dict[str, Any]:
        """Exactly the issue's keys; an unbounded figure (timeouts dominating) is null."""
        return {
            "verdict": self.verdict.value,
            "p95E2eSeconds": _num(self.p95_e2e_s),
            "p95TtftSeconds": _num(self.p95_ttft_s),
            "p95CiSeconds": [_num(self.p95_ci_s[0]), _num(self.p95_ci_s[1])],
            "samples": self.samples,  # latency observations: successes plus censored (timed-out) requests
            "errorRate": round(self.error_rate, 6),
            "concurrency": self.concurrency,
            "achievedConcurrency": round(self.achieved_concurrency, 3),
            "reasons": list(self.reasons),
        }


def _num(v: float | None) -> float | None:
    return None if v is None or math.isinf(v) else round(v, 6)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.3f}s"


def _judge(name: str, values: list[float], threshold: float) -> tuple[Verdict, str, tuple[float | None, float | None]]:
    p95 = nearest_rank(values, 0.95)
    lo, hi = quantile_ci(values, 0.95)
    ci = f"95% CI [{_fmt(lo)}, {_fmt(hi)}]"
    head = f"p95 {name} {_fmt(p95)}"
    if lo is not None and lo > threshold:
        return Verdict.FAIL, f"{head} over the SLA {threshold:.3f}s: {ci} is entirely above it", (lo, hi)
    if hi is not None and hi < threshold:
        return Verdict.PASS, f"{head} meets the SLA {threshold:.3f}s: {ci} is entirely below it", (lo, hi)
    why = "the upper bound does not exist yet (too few samples)" if hi is None else "it straddles the threshold"
    return (Verdict.INCONCLUSIVE, f"p95 {name} {_fmt(p95)} vs SLA {threshold:.3f}s: {ci}; {why}, measure longer",
            (lo, hi))


def evaluate(result: RunResult, target: SlaTarget, limits: ValidityLimits | None = None) -> Report:
    limits = limits or ValidityLimits()
    window = result.window()
    ok = [s for s in window if s.ok]
    failures = [s for s in window if not s.ok]
    censored = [s for s in failures if s.error in CENSORED]
    # A request cut at the stop is the measurement's doing, not the server's: it is not an error
    # (the in-flight budget below voids the run instead), but its latency still counts as +inf.
    errors = [s for s in failures if s.error != INFLIGHT]
    e2e = sorted([s.e2e for s in ok if s.e2e is not None] + [math.inf] * len(censored))
    ttft = sorted([s.ttft for s in ok if s.ttft is not None] + [math.inf] * len(censored))
    n_all = len(window)
    error_rate = len(errors) / n_all if n_all else 0.0
    achieved = achieved_concurrency(result.samples, result.t0, result.t1)
    span = max(result.t1 - result.t0, 1e-9)

    invalid_first: list[str] = []
    invalid: list[str] = []
    fail: list[str] = []
    warnings: list[str] = []

    mean_cpu = sum(result.cpu_percent) / len(result.cpu_percent) if result.cpu_percent else 0.0
    if mean_cpu > limits.max_client_cpu_percent:
        invalid_first.append(f"client CPU saturated: {mean_cpu:.0f}% of a core on average "
                             f"(limit {limits.max_client_cpu_percent:.0f}%); use more load-generator processes")
    lag_budget = limits.loop_lag_budget_s(target)
    lag_p95 = nearest_rank(sorted(result.loop_lag_s), 0.95) or 0.0
    if lag_p95 > lag_budget:
        invalid_first.append(f"client event loop lagging: p95 {lag_p95 * 1000:.0f} ms "
                             f"(budget {lag_budget * 1000:.0f} ms), timestamps are late")
    if result.notes and n_all == 0:
        invalid_first.extend(result.notes)
    if n_all and error_rate > target.max_error_rate:
        kinds = Counter(s.error for s in errors)
        listed = ", ".join(f"{k} {v}" for k, v in kinds.most_common())
        fail.append(f"error rate {error_rate:.2%} over the budget {target.max_error_rate:.2%} "
                    f"({len(errors)}/{n_all}: {listed})")
    if achieved < limits.min_concurrency_ratio * target.concurrency:
        invalid.append(f"achieved concurrency {achieved:.1f} below the target {target.concurrency} "
                       f"(at least {limits.min_concurrency_ratio:.0%} required)")
    inflight_budget = max(1, math.floor(limits.max_inflight_at_stop_fraction * max(n_all, 1)))
    if result.inflight_at_stop > inflight_budget:
        invalid.append(f"{result.inflight_at_stop} requests still in flight at the stop "
                       f"(budget {inflight_budget})")
    if not result.warmup_complete and n_all:
        warnings.append("warning: " + "; ".join(result.notes or ["warm-up incomplete"]))
    elif result.notes:
        warnings.extend(f"warning: {n}" for n in result.notes)

    verdicts: list[Verdict] = []
    lines: list[str] = []
    ci: tuple[float | None, float | None] = (None, None)
    if len(e2e) < limits.min_samples:
        lines.append(f"too few samples: {len(e2e)} (need {limits.min_samples}); measure longer")
        verdicts.append(Verdict.INCONCLUSIVE)
    if e2e:
        v, line, ci = _judge("end-to-end", e2e, target.p95_e2e_s)
        verdicts.append(v)
        lines.append(line)
    if target.p95_ttft_s is not None and ttft:
        v, line, _ = _judge("TTFT", ttft, target.p95_ttft_s)
        verdicts.append(v)
        lines.append(line)

    if invalid_first:
        verdict, reasons = Verdict.INVALID, invalid_first + fail + invalid
    elif fail:
        verdict, reasons = Verdict.FAIL, fail + invalid
    elif invalid or n_all == 0:
        verdict, reasons = Verdict.INVALID, invalid or ["no request was measured", *result.notes]
    elif Verdict.FAIL in verdicts:
        verdict, reasons = Verdict.FAIL, [line for line in lines if "over the SLA" in line]
    elif Verdict.INCONCLUSIVE in verdicts or not verdicts:
        verdict, reasons = Verdict.INCONCLUSIVE, [line for line in lines if "meets the SLA" not in line]
    else:
        verdict, reasons = Verdict.PASS, lines
    if verdict is not Verdict.PASS:
        reasons += [line for line in lines if line not in reasons and "too few" not in line]

    # Details for the human reports (not part of the JSON contract).
    tpot = sorted(s.tpot for s in ok if s.tpot is not None)
    not_usage = sum(1 for s in ok if not s.tokens_from_usage)
    if not_usage:
        warnings.append(f"warning: {not_usage} responses had no usage chunk; their tokens were counted as chunks")
    details: dict[str, Any] = {
        "windowSeconds": span,
        "requestsPerSecond": len([s for s in window if s.end <= result.t1]) / span,
        "outputTokensPerSecond": sum(s.output_tokens or 0 for s in ok if s.end <= result.t1) / span,
        "p50E2eSeconds": nearest_rank(e2e, 0.5),
        "p99E2eSeconds": nearest_rank(e2e, 0.99),
        "p50TtftSeconds": nearest_rank(ttft, 0.5),
        "p50TpotSeconds": nearest_rank(tpot, 0.5),
        "p95TpotSeconds": nearest_rank(tpot, 0.95),
        "failures": dict(Counter(s.error or "" for s in failures)),
        "failureExamples": [f"{s.error}: {s.detail}" for s in failures[:3]],
        "clientCpuPercentMean": mean_cpu,
        "clientCpuPercentMax": max(result.cpu_percent, default=0.0),
        "clientLoopLagP95Seconds": lag_p95,
        "inflightAtStop": result.inflight_at_stop,
        "warmupComplete": result.warmup_complete,
        "warmupRequests": len([s for s in result.samples if s.start < result.t0]),
        "locustRoundedP95E2eSeconds": (result.locust_p95_e2e_ms / 1000.0) if result.locust_p95_e2e_ms else None,
        "wallSeconds": result.wall_s,
    }
    srv = result.server
    if srv is not None and srv.available:
        details["serverRunningMean"] = sum(srv.running) / len(srv.running) if srv.running else None
        details["serverWaitingMean"] = sum(srv.waiting) / len(srv.waiting) if srv.waiting else None
        if srv.e2e is not None:
            details["serverE2eCount"] = srv.e2e.count
            details["serverE2eMeanSeconds"] = srv.e2e.mean_s
            details["serverE2eP95BucketSeconds"] = srv.e2e.p95_s
        if srv.ttft is not None:
            details["serverTtftMeanSeconds"] = srv.ttft.mean_s
        client_mean = (sum(s.e2e for s in ok if s.e2e is not None) / len(ok)) if ok else None
        if srv.e2e is not None and srv.e2e.mean_s is not None and client_mean is not None:
            gap = client_mean - srv.e2e.mean_s
            details["clientServerE2eGapSeconds"] = gap
            if abs(gap) > max(0.05, 0.1 * srv.e2e.mean_s):
                warnings.append(f"warning: client mean e2e {client_mean:.3f}s vs server {srv.e2e.mean_s:.3f}s: "
                                f"a {gap * 1000:.0f} ms gap (network, gateway or client overhead)")
        if srv.waiting and max(srv.waiting) > 0:
            warnings.append(f"warning: the server queued requests (waiting up to {max(srv.waiting):.0f}): "
                            "its max-num-seqs is below the offered concurrency")

    return Report(verdict=verdict, p95_e2e_s=nearest_rank(e2e, 0.95), p95_ttft_s=nearest_rank(ttft, 0.95),
                  p95_ci_s=ci, samples=len(e2e), error_rate=error_rate, concurrency=target.concurrency,
                  achieved_concurrency=achieved, reasons=reasons + warnings, target=target, details=details,
                  e2e_values=[v for v in e2e if not math.isinf(v)])


# --------------------------------------------------------------------------- reports


def _rows(report: Report) -> list[tuple[str, str]]:
    d = report.details
    t = report.target
    rows = [
        ("verdict", report.verdict.value),
        ("p95 end-to-end", f"{_fmt(report.p95_e2e_s)} (SLA {t.p95_e2e_s:.3f}s)"),
        ("95% CI of p95", f"[{_fmt(report.p95_ci_s[0])}, {_fmt(report.p95_ci_s[1])}]"),
        ("p95 TTFT", _fmt(report.p95_ttft_s) + (f" (SLA {t.p95_ttft_s:.3f}s)" if t.p95_ttft_s else "")),
        ("p50 / p99 end-to-end", f"{_fmt(d.get('p50E2eSeconds'))} / {_fmt(d.get('p99E2eSeconds'))}"),
        ("p50 / p95 TPOT", f"{_fmt(d.get('p50TpotSeconds'))} / {_fmt(d.get('p95TpotSeconds'))}"),
        ("samples", str(report.samples)),
        ("error rate", f"{report.error_rate:.2%} (budget {t.max_error_rate:.2%})"),
        ("concurrency target / achieved", f"{report.concurrency} / {report.achieved_concurrency:.2f}"),
        ("throughput", f"{d.get('requestsPerSecond', 0):.2f} req/s, {d.get('outputTokensPerSecond', 0):.0f} tok/s"),
        ("client CPU mean / max", f"{d.get('clientCpuPercentMean', 0):.0f}% / {d.get('clientCpuPercentMax', 0):.0f}%"),
        ("warm-up requests excluded", str(d.get("warmupRequests", 0))),
        ("in flight at stop", str(d.get("inflightAtStop", 0))),
    ]
    if d.get("locustRoundedP95E2eSeconds") is not None:
        rows.append(("Locust's own (rounded) p95", _fmt(d["locustRoundedP95E2eSeconds"])))
    if "serverE2eMeanSeconds" in d:
        rows.append(("server mean e2e / p95 (histogram)",
                     f"{_fmt(d.get('serverE2eMeanSeconds'))} / {_fmt(d.get('serverE2eP95BucketSeconds'))}"))
    if d.get("serverRunningMean") is not None:
        rows.append(("server running / waiting (mean)",
                     f"{d['serverRunningMean']:.1f} / {d.get('serverWaitingMean') or 0:.1f}"))
    return rows


def to_markdown(report: Report, title: str = "SLA load test") -> str:
    out = [f"# {title}: {report.verdict.value}", "", "| measure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _rows(report)]
    out += ["", "## Reasons", ""] + [f"- {r}" for r in report.reasons]
    fails = report.details.get("failures") or {}
    if fails:
        out += ["", "## Failures", ""] + [f"- {k}: {v}" for k, v in sorted(fails.items())]
        out += [f"- e.g. {e}" for e in report.details.get("failureExamples", [])]
    return "\n".join(out) + "\n"


def to_html(report: Report, png: bytes | None = None, title: str = "SLA load test") -> str:
    esc = html.escape
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in _rows(report))
    reasons = "".join(f"<li>{esc(r)}</li>" for r in report.reasons)
    img = (f'<img alt="latency distribution against the SLA" src="data:image/png;base64,{b64encode(png).decode()}">'
           if png else "")
    colour = {"PASS": "#1a7f37", "FAIL": "#cf222e", "INCONCLUSIVE": "#9a6700", "INVALID": "#8250df"}
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}th{text-align:left;padding-right:2em}"
            "td,th{border-bottom:1px solid #ddd;padding:.2em .5em}</style></head><body>"
            f"<h1>{esc(title)}: <span style='color:{colour[report.verdict.value]}'>{report.verdict.value}</span></h1>"
            f"<table>{rows}</table><h2>Reasons</h2><ul>{reasons}</ul>{img}</body></html>\n")
