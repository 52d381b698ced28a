"""Concurrency sweep: find the largest batch size that still meets the SLA (the knee).

Steps 1, 2, 4, ... up to ``cap`` (the cap itself is the last step even if it is not a power of
two). Each step is a full run (warm-up wave excluded, then the window). A step *meets* the SLA
when its measurement is valid, its error rate is within budget and its exact p95 (and p95 TTFT
when set) is at or under the threshold; the point estimate is used here rather than the CI
verdict, because a sweep asks "where does it cross", and short steps at low concurrency have few
samples. The sweep stops at the first step that misses (latency only grows past the knee), so the
knee is found within one doubling. The per-step CI verdicts are reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtests.config import LoadConfig
from loadtests.runner import RunPlan, run
from loadtests.sla import Report, SlaTarget, ValidityLimits, Verdict, evaluate

MIN_STEP_REQUESTS = 20  # p95 of 20 is the 19th: one stray slow request cannot decide a step


def concurrency_steps(cap: int, start: int = 1) -> list[int]:
    if cap < 1:
        raise ValueError("the sweep cap must be at least 1")
    steps, c = [], max(1, start)
    while c < cap:
        steps.append(c)
        c *= 2
    return [*steps, cap]


@dataclass
class SweepStep:
    concurrency: int
    report: Report
    meets: bool
    requests_per_second: float

    def to_json(self) -> dict[str, Any]:
        return {"concurrency": self.concurrency, "meetsSla": self.meets,
                "requestsPerSecond": round(self.requests_per_second, 4), **self.report.to_json()}


@dataclass
class SweepResult:
    target: SlaTarget
    steps: list[SweepStep]
    knee: int | None
    replicas: int = 1
    target_rps: float | None = None
    max_num_seqs: int | None = None
    predicted_knee: int | None = None

    @property
    def knee_step(self) -> SweepStep | None:
        return next((s for s in self.steps if s.concurrency == self.knee), None)

    @property
    def knee_per_replica(self) -> float | None:
        return self.knee / self.replicas if self.knee is not None else None

    @property
    def replicas_needed(self) -> int | None:
        """Replicas to serve ``target_rps`` with each replica held at its knee."""
        step = self.knee_step
        if self.target_rps is None or step is None or step.requests_per_second <= 0:
            return None
        return math.ceil(self.target_rps / (step.requests_per_second / self.replicas))

    def comparisons(self) -> list[str]:
        out = []
        per = self.knee_per_replica
        if per is None:
            out.append("no step met the SLA: even one request at a time is too slow")
        else:
            out.append(f"knee: {self.knee} concurrent requests ({per:g} per replica) meet p95 <= "
                       f"{self.target.p95_e2e_s:g}s")
            if self.max_num_seqs is not None:
                rel = "above" if self.max_num_seqs > per else "at or below"
                out.append(f"deployed max-num-seqs {self.max_num_seqs} is {rel} the measured knee per replica")
            if self.predicted_knee is not None:
                out.append(f"sizing predicted {self.predicted_knee} per replica; measured {per:g}")
        if self.replicas_needed is not None:
            out.append(f"{self.target_rps:g} req/s needs {self.replicas_needed} replica(s) at the knee")
        return out

    def to_json(self) -> dict[str, Any]:
        step = self.knee_step
        return {
            "knee": self.knee,
            "kneePerReplica": self.knee_per_replica,
            "replicas": self.replicas,
            "p95SlaSeconds": self.target.p95_e2e_s,
            "throughputAtKneeRps": round(step.requests_per_second, 4) if step else None,
            "targetRps": self.target_rps,
            "replicasNeeded": self.replicas_needed,
            "maxNumSeqs": self.max_num_seqs,
            "predictedKnee": self.predicted_knee,
            "notes": self.comparisons(),
            "steps": [s.to_json() for s in self.steps],
        }


def step_meets(report: Report, target: SlaTarget) -> bool:
    if report.verdict is Verdict.INVALID or report.samples == 0:
        return False
    if report.error_rate > target.max_error_rate:
        return False
    if report.p95_e2e_s is None or report.p95_e2e_s > target.p95_e2e_s:
        return False
    return not (target.p95_ttft_s is not None
                and (report.p95_ttft_s is None or report.p95_ttft_s > target.p95_ttft_s))


def sweep(load: LoadConfig, target: SlaTarget, *, duration_s: float, cap: int, replicas: int = 1,
          warmup_waves: int = 1, processes: int = 1, target_rps: float | None = None,
          max_num_seqs: int | None = None, predicted_knee: int | None = None,
          limits: ValidityLimits | None = None,
          progress: Callable[[str, float], None] | None = None) -> SweepResult:
    steps = concurrency_steps(cap)
    done: list[SweepStep] = []
    knee: int | None = None
    for i, c in enumerate(steps):
        def step_progress(msg: str, frac: float, i: int = i, c: int = c) -> None:
            if progress is not None:
                progress(f"step {i + 1}/{len(steps)} (concurrency {c}): {msg}", (i + frac) / len(steps))

        plan = RunPlan(load=load.with_concurrency(c), duration_s=duration_s, warmup_waves=warmup_waves,
                       processes=processes, min_window_requests=MIN_STEP_REQUESTS)
        result = run(plan, step_progress)
        step_target = SlaTarget(p95_e2e_s=target.p95_e2e_s, p95_ttft_s=target.p95_ttft_s, concurrency=c,
                                max_error_rate=target.max_error_rate)
        report = evaluate(result, step_target, limits)
        meets = step_meets(report, target)
        done.append(SweepStep(c, report, meets, float(report.details.get("requestsPerSecond", 0.0))))
        if not meets:
            break
        knee = c
    return SweepResult(target=target, steps=done, knee=knee, replicas=replicas, target_rps=target_rps,
                       max_num_seqs=max_num_seqs, predicted_knee=predicted_knee)


def to_markdown(result: SweepResult) -> str:
    out = [f"# Concurrency sweep: knee {result.knee if result.knee is not None else 'none'}", ""]
    out += [f"- {n}" for n in result.comparisons()]
    out += ["", "| concurrency | p95 e2e (s) | 95% CI | p95 TTFT (s) | error rate | req/s | meets SLA | verdict |",
            "|---|---|---|---|---|---|---|---|"]
    for s in result.steps:
        r = s.report
        ci = r.p95_ci_s
        out.append(f"| {s.concurrency} | {_f(r.p95_e2e_s)} | [{_f(ci[0])}, {_f(ci[1])}] | {_f(r.p95_ttft_s)} | "
                   f"{r.error_rate:.2%} | {s.requests_per_second:.2f} | {'yes' if s.meets else 'no'} | "
                   f"{r.verdict.value} |")
    return "\n".join(out) + "\n"


def to_html(result: SweepResult, png: bytes | None) -> str:
    import html
    from base64 import b64encode

    rows = "".join(
        f"<tr><td>{s.concurrency}</td><td>{_f(s.report.p95_e2e_s)}</td><td>{_f(s.report.p95_ttft_s)}</td>"
        f"<td>{s.report.error_rate:.2%}</td><td>{s.requests_per_second:.2f}</td>"
        f"<td>{'yes' if s.meets else 'no'}</td><td>{s.report.verdict.value}</td></tr>" for s in result.steps)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.comparisons())
    img = f'<img alt="p95 against concurrency" src="data:image/png;base64,{b64encode(png).decode()}">' if png else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Concurrency sweep</title></head><body>"
            f"<h1>Concurrency sweep: knee {result.knee}</h1><ul>{notes}</ul><table border='1' cellpadding='4'>"
            "<tr><th>concurrency</th><th>p95 e2e (s)</th><th>p95 TTFT (s)</th><th>error rate</th><th>req/s</th>"
            f"<th>meets SLA</th><th>verdict</th></tr>{rows}</table>{img}</body></html>\n")


def _f(v: float | None) -> str:
    return "n/a" if v is None else ("inf" if math.isinf(v) else f"{v:.3f}")
