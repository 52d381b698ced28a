"""Plain-Locust entry point: ``locust -f loadtests/locustfile.py --host URL --headless -u 32 -t 2m``.

For interactive use and Locust's web UI; the gate itself (``servekit loadtest``,
``python -m loadtests.gate``) drives the same user through :mod:`loadtests.runner`, which adds the
warm-up protocol, the drain and the validity checks. Settings come from the gate's environment
variables (see :mod:`loadtests.gate`): SERVEKIT_MODEL (required), SERVEKIT_WORKLOAD,
SERVEKIT_MAX_TOKENS, SERVEKIT_REQUEST_TIMEOUT_SECONDS, SERVEKIT_API_KEY, and, to get a verdict
and exit code when Locust quits, SERVEKIT_P95_SECONDS (+ SERVEKIT_P95_TTFT_SECONDS,
SERVEKIT_MAX_ERROR_RATE). Run with ``--stop-timeout`` >= the request timeout, or the requests
in flight at the end are counted as failures (they are not dropped).

Percentiles are exact, from the raw samples kept here, not Locust's rounded statistics; each
user's first request is the excluded warm-up. Single process only: in distributed mode the
samples stay on the workers.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from locust import events
from locust.env import Environment

from loadtests.config import API_KEY_ENV
from loadtests.prompts import PromptFactory
from loadtests.runner import RunPlan, RunResult
from loadtests.sla import SlaTarget, evaluate, to_markdown
from loadtests.stream import INFLIGHT, Sample, failed
from loadtests.user import CompletionsUser, Control
from servekit.spec import WorkloadProfile

_samples: list[Sample] = []
_control = Control(
    factory=PromptFactory(model=os.environ.get("SERVEKIT_MODEL", "emulated"),
                          workload=WorkloadProfile(os.environ.get("SERVEKIT_WORKLOAD", "chat")),
                          nonce=os.urandom(6).hex(), seed=0,
                          max_tokens=int(os.environ["SERVEKIT_MAX_TOKENS"]) if os.environ.get("SERVEKIT_MAX_TOKENS")
                          else None),
    sink=_samples.append,
    request_timeout_s=float(os.environ.get("SERVEKIT_REQUEST_TIMEOUT_SECONDS", "60")),
    api_key=os.environ.get(API_KEY_ENV) or None,
)


class ChatCompletionsUser(CompletionsUser):
    control = _control


@events.quitting.add_listener
def _verdict(environment: Environment, **_kw: Any) -> None:
    p95 = os.environ.get("SERVEKIT_P95_SECONDS")
    if not p95 or not _samples:
        return
    now = time.perf_counter()
    samples = list(_samples) + [failed(u, st, now, INFLIGHT, "still running when Locust quit", rid)
                                for rid, (u, st) in _control.inflight.items()]
    first_done: dict[int, float] = {}
    for s in sorted(samples, key=lambda s: s.end):
        first_done.setdefault(s.user, s.end)
    t0 = max(first_done.values())
    users = max(1, len(first_done))
    target = SlaTarget(p95_e2e_s=float(p95), concurrency=users,
                       p95_ttft_s=float(os.environ["SERVEKIT_P95_TTFT_SECONDS"])
                       if os.environ.get("SERVEKIT_P95_TTFT_SECONDS") else None,
                       max_error_rate=float(os.environ.get("SERVEKIT_MAX_ERROR_RATE", "0.01")))
    result = RunResult(plan=RunPlan(load=_load_stub(environment, users), duration_s=now - t0), samples=samples,
                       t0=t0, t1=now, warmup_complete=True,
                       cpu_percent=[environment.runner.current_cpu_usage] if environment.runner else [], loop_lag_s=[],
                       inflight_at_stop=len(_control.inflight), server=None, wall_s=now - min(s.start for s in samples))
    report = evaluate(result, target)
    sys.stderr.write(to_markdown(report, "SLA (exact percentiles from raw samples)"))
    environment.process_exit_code = report.exit_code


def _load_stub(environment: Environment, users: int) -> Any:
    from loadtests.config import LoadConfig

    return LoadConfig(endpoint=environment.host or "", model=_control.factory.model, concurrency=users)
