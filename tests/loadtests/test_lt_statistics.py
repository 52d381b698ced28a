"""The verdict's statistics, checked against independent computations.

- CI ranks: against an exact binomial CDF in rational arithmetic (fractions.Fraction, math.comb),
  searched by brute force, i.e. no floating point and no shared code with loadtests.sla.
- Coverage: a seeded simulation draws samples from a known distribution (uniform, true p95 = 0.95)
  and counts how often the interval contains the truth.
- Verdict logic: synthetic runs whose samples are constructed so the outcome is known by hand.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest

from loadtests.config import LoadConfig
from loadtests.runner import RunPlan, RunResult
from loadtests.sla import (
    EXIT_CODES,
    SlaTarget,
    ValidityLimits,
    Verdict,
    achieved_concurrency,
    evaluate,
    nearest_rank,
    quantile_ci,
    quantile_ci_ranks,
)
from loadtests.stream import INFLIGHT, TIMEOUT, Sample


def exact_ranks(n: int, q: Fraction = Fraction(95, 100), tail: Fraction = Fraction(25, 1000)) -> tuple[int | None,
                                                                                                         int | None]:
    """Brute force: F(k) = sum_{j<=k} C(n,j) q^j (1-q)^(n-j), exactly."""
    cdf, acc = [], Fraction(0)
    for j in range(n + 1):
        acc += math.comb(n, j) * q**j * (1 - q) ** (n - j)
        cdf.append(acc)
    lo = max((r for r in range(1, n + 1) if cdf[r - 1] <= tail), default=None)
    hi = min((r for r in range(1, n + 1) if cdf[r - 1] >= 1 - tail), default=None)
    return lo, hi


@pytest.mark.parametrize("n", [1, 20, 59, 72, 73, 100, 200, 333, 640])
def test_ci_ranks_match_exact_binomial(n: int) -> None:
    assert quantile_ci_ranks(n) == exact_ranks(n)


def test_ci_ranks_match_normal_approximation_for_large_n() -> None:
    # load-testing-notes.md [D]: about n*q -/+ 1.96*sqrt(n*q*(1-q)) ranks: N=600 -> ~p93..p97.
    lo, hi = quantile_ci_ranks(600)
    assert lo is not None and hi is not None
    half = 1.96 * math.sqrt(600 * 0.95 * 0.05)
    assert abs(lo - (570 - half)) <= 2 and abs(hi - (570 + half)) <= 2
    assert 0.92 <= lo / 600 <= 0.94 and 0.96 <= hi / 600 <= 0.98


def test_upper_bound_needs_72_samples() -> None:
    # P(all n samples below the true p95) = 0.95^n: 0.0262 for n=71 (> 2.5%), 0.0249 for n=72.
    assert quantile_ci_ranks(71)[1] is None
    assert quantile_ci_ranks(72)[1] == 72


def test_ci_coverage_by_simulation() -> None:
    rng = random.Random(7)
    trials, covered = 2000, 0
    for _ in range(trials):
        xs = sorted(rng.random() for _ in range(200))
        lo, hi = quantile_ci(xs)
        assert lo is not None and hi is not None
        covered += lo <= 0.95 <= hi
    # Exact coverage for n=200 is >= 95% (conservative); 2000 trials give a s.e. of ~0.5%.
    assert covered / trials >= 0.935


def test_nearest_rank() -> None:
    xs = sorted(float(i) for i in range(1, 101))
    assert nearest_rank(xs, 0.95) == 95.0
    assert nearest_rank(xs, 0.5) == 50.0
    assert nearest_rank([3.0], 0.95) == 3.0
    assert nearest_rank([], 0.95) is None


def _s(user: int, start: float, end: float, ok: bool = True, e2e: float | None = None, error: str | None = None,
       ttft: float | None = None) -> Sample:
    return Sample(user=user, start=start, end=end, ok=ok, error=error, e2e=e2e if e2e is not None else end - start,
                  ttft=ttft if ttft is not None else 0.01, output_tokens=10, tokens_from_usage=True)


def test_achieved_concurrency_is_time_weighted() -> None:
    # Window [10, 20]: one request covers it all (10 s), one covers half (5 s), one lies outside.
    samples = [_s(0, 5, 25), _s(1, 15, 30), _s(2, 0, 9)]
    assert achieved_concurrency(samples, 10, 20) == pytest.approx(1.5)


def _result(samples: list[Sample], *, t0: float = 0.0, t1: float = 100.0, cpu: float = 20.0, inflight: int = 0,
            lags: list[float] | None = None) -> RunResult:
    load = LoadConfig(endpoint="http://127.0.0.1:1", model="m", concurrency=4)
    return RunResult(plan=RunPlan(load=load, duration_s=t1 - t0), samples=samples, t0=t0, t1=t1,
                     warmup_complete=True, cpu_percent=[cpu] * 10, loop_lag_s=lags or [0.001] * 10,
                     inflight_at_stop=inflight, server=None, wall_s=t1 - t0)


def _closed_loop(latencies: list[float], users: int = 4, t0: float = 0.0) -> list[Sample]:
    """Back-to-back requests per user, latencies dealt round-robin, so concurrency is exactly `users`."""
    clock = [t0] * users
    out = []
    for i, lat in enumerate(latencies):
        u = i % users
        out.append(_s(u, clock[u], clock[u] + lat))
        clock[u] += lat
    return out


def test_verdicts_around_a_known_p95() -> None:
    rng = random.Random(3)
    lat = [0.5 + rng.random() for _ in range(800)]  # uniform on [0.5, 1.5]: true p95 = 1.45
    samples = _closed_loop(lat)
    end = max(s.end for s in samples)
    res = _result(samples, t1=end)
    p95 = nearest_rank(sorted(lat), 0.95)
    assert p95 is not None and abs(p95 - 1.45) < 0.03
    assert evaluate(res, SlaTarget(p95_e2e_s=1.6, concurrency=4)).verdict is Verdict.PASS
    assert evaluate(res, SlaTarget(p95_e2e_s=1.3, concurrency=4)).verdict is Verdict.FAIL
    # The point estimate always lies inside its own CI, so an SLA at it straddles.
    mid = evaluate(res, SlaTarget(p95_e2e_s=p95, concurrency=4))
    assert mid.verdict is Verdict.INCONCLUSIVE
    assert EXIT_CODES[mid.verdict] == 4 and mid.exit_code == 4


def test_warmup_requests_are_excluded() -> None:
    slow = _closed_loop([5.0] * 4)  # the warm-up wave: slow, ends at t=5
    fast = _closed_loop([0.1] * 800, t0=5.0)
    res = _result(slow + fast, t0=5.0, t1=max(s.end for s in fast))
    rep = evaluate(res, SlaTarget(p95_e2e_s=0.2, concurrency=4))
    assert rep.verdict is Verdict.PASS and rep.samples == 800
    assert rep.details["warmupRequests"] == 4


def test_timeouts_count_as_infinite_latency() -> None:
    # 3% of requests time out: within a 5% error budget, but p95 must see them as above any SLA.
    lat = [0.1] * 970
    samples = _closed_loop(lat)
    end = max(s.end for s in samples)
    samples += [_s(i % 4, end - 2.0, end, ok=False, error=TIMEOUT) for i in range(30)]
    for s in samples[-30:]:
        s.e2e = None
    res = _result(samples, t1=end)
    rep = evaluate(res, SlaTarget(p95_e2e_s=1.0, concurrency=4, max_error_rate=0.05))
    assert rep.verdict is Verdict.PASS  # 3% censored still leaves p95 at 0.1
    samples += [_s(i % 4, end - 2.0, end, ok=False, error=TIMEOUT) for i in range(40)]
    for s in samples[-40:]:
        s.e2e = None
    rep = evaluate(_result(samples, t1=end), SlaTarget(p95_e2e_s=1.0, concurrency=4, max_error_rate=0.10))
    assert rep.verdict is Verdict.FAIL and rep.p95_e2e_s == math.inf
    assert rep.to_json()["p95E2eSeconds"] is None


def test_validity_checks() -> None:
    samples = _closed_loop([0.1] * 800)
    end = max(s.end for s in samples)
    target = SlaTarget(p95_e2e_s=1.0, concurrency=4)
    busy = evaluate(_result(samples, t1=end, cpu=97.0), target)
    assert busy.verdict is Verdict.INVALID and "CPU" in busy.reasons[0]
    short = evaluate(_result(samples, t1=end), SlaTarget(p95_e2e_s=1.0, concurrency=8))
    assert short.verdict is Verdict.INVALID and "achieved concurrency" in short.reasons[0]
    stuck = list(samples) + [_s(0, end - 1, end, ok=False, error=INFLIGHT) for _ in range(20)]
    rep = evaluate(_result(stuck, t1=end, inflight=20), target)
    # Cut by the stop: not server errors (no FAIL on the error rate), but the run is void.
    assert rep.verdict is Verdict.INVALID and rep.error_rate == 0.0 and "in flight" in rep.reasons[0]
    lag = evaluate(_result(samples, t1=end, lags=[0.2] * 20), target)
    assert lag.verdict is Verdict.INVALID and "lag" in lag.reasons[0]
    relaxed = evaluate(_result(samples, t1=end, lags=[0.2] * 20), target, ValidityLimits(min_loop_lag_budget_s=0.5))
    assert relaxed.verdict is Verdict.PASS


def test_errors_over_budget_fail_before_concurrency_is_judged() -> None:
    samples = _closed_loop([0.1] * 400)
    end = max(s.end for s in samples)
    samples += [_s(0, end - 0.5, end - 0.4, ok=False, error="http_error") for _ in range(40)]
    rep = evaluate(_result(samples, t1=end), SlaTarget(p95_e2e_s=1.0, concurrency=6))
    assert rep.verdict is Verdict.FAIL and "error rate" in rep.reasons[0]


def test_too_few_samples_is_inconclusive_but_can_still_fail() -> None:
    few = _closed_loop([0.1] * 40)
    end = max(s.end for s in few)
    assert evaluate(_result(few, t1=end), SlaTarget(p95_e2e_s=1.0, concurrency=4)).verdict is Verdict.INCONCLUSIVE
    # All 40 above the SLA: the lower bound exists and is above it, so FAIL is already certain.
    assert evaluate(_result(few, t1=end), SlaTarget(p95_e2e_s=0.05, concurrency=4)).verdict is Verdict.FAIL


def test_json_has_exactly_the_issue_keys() -> None:
    samples = _closed_loop([0.1] * 200)
    rep = evaluate(_result(samples, t1=max(s.end for s in samples)), SlaTarget(p95_e2e_s=1.0, concurrency=4))
    assert list(rep.to_json()) == ["verdict", "p95E2eSeconds", "p95TtftSeconds", "p95CiSeconds", "samples",
                                   "errorRate", "concurrency", "achievedConcurrency", "reasons"]
    assert [EXIT_CODES[v] for v in Verdict] == [0, 1, 4, 5]
