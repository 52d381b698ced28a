"""The SLA gate, headless: ``python -m loadtests.gate`` (what the post-deploy Kubernetes Job runs).

Environment contract (the Job's env; everything else has a default):

==================================  ========  ==================================================
variable                            required  meaning
==================================  ========  ==================================================
SERVEKIT_ENDPOINT                   yes       base URL of the OpenAI-compatible server, e.g.
                                              ``http://llama.llama.svc.cluster.local:8000``
SERVEKIT_MODEL                      yes       served model name (the request's ``model``)
SERVEKIT_P95_SECONDS                yes       p95 end-to-end latency SLA, seconds
SERVEKIT_CONCURRENCY                yes       requests in flight: SLA batch size x replicas
SERVEKIT_P95_TTFT_SECONDS           no        p95 time-to-first-token SLA, seconds
SERVEKIT_MAX_ERROR_RATE             no        failure budget, 0..1 (default 0.01)
SERVEKIT_WORKLOAD                   no        summarization | extraction | chat | code (chat)
SERVEKIT_DURATION_SECONDS           no        measurement window (default 60)
SERVEKIT_WARMUP_WAVES               no        requests per user excluded first (default 1)
SERVEKIT_REQUEST_TIMEOUT_SECONDS    no        per request (default max(60, 4 x p95 SLA))
SERVEKIT_MAX_TOKENS                 no        output tokens per request (default: the profile's)
SERVEKIT_PROCESSES                  no        Locust processes (default: one per 256 users, at
                                              most one per CPU)
SERVEKIT_READY_TIMEOUT_SECONDS      no        wait this long for ``/health`` (default 600)
SERVEKIT_REPORT_DIR                 no        also write report.json, report.md, report.html
SERVEKIT_API_KEY                    no        bearer token (a secret: never printed)
==================================  ========  ==================================================

Output: progress on stderr; the Markdown report and then the JSON verdict (the issue's keys) on
stdout, so they end up in the Job's log. Exit code: the verdict's (0 PASS, 1 FAIL,
4 INCONCLUSIVE, 5 INVALID; see :mod:`loadtests.sla`), 2 for a bad or missing variable, 3 when
the endpoint never became healthy. The Job fails unless the exit code is 0.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from loadtests.config import USERS_PER_PROCESS, LoadConfig, default_processes
from loadtests.reports import write_report
from loadtests.runner import RunPlan, run
from loadtests.sla import SlaTarget, evaluate, to_markdown
from servekit.errors import EXIT_ENVIRONMENT, EXIT_USAGE
from servekit.spec import WorkloadProfile

__all__ = ["USERS_PER_PROCESS", "GateConfigError", "main", "plan_from_env", "wait_healthy"]


class GateConfigError(ValueError):
    pass


def _raw(env: Mapping[str, str], name: str, required: bool) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        if required:
            raise GateConfigError(f"{name} is required")
        return None
    return raw


def _float(env: Mapping[str, str], name: str, default: float | None = None, *, required: bool = False,
           positive: bool = True) -> float | None:
    raw = _raw(env, name, required)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise GateConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or (positive and value <= 0) or value < 0:
        raise GateConfigError(f"{name}={raw!r} must be {'positive' if positive else 'non-negative'}")
    return value


def _int(env: Mapping[str, str], name: str, default: int | None = None, *, required: bool = False) -> int | None:
    raw = _raw(env, name, required)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise GateConfigError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise GateConfigError(f"{name}={raw!r} must be positive")
    return value


def _need(v: float | int | None) -> float:
    assert v is not None  # required variables or ones with a default
    return float(v)


def plan_from_env(env: Mapping[str, str]) -> tuple[RunPlan, SlaTarget]:
    endpoint = _raw(env, "SERVEKIT_ENDPOINT", True) or ""
    if not endpoint.startswith(("http://", "https://")):
        raise GateConfigError(f"SERVEKIT_ENDPOINT={endpoint!r} must be an http(s) URL")
    model = _raw(env, "SERVEKIT_MODEL", True) or ""
    p95 = _need(_float(env, "SERVEKIT_P95_SECONDS", required=True))
    concurrency = int(_need(_int(env, "SERVEKIT_CONCURRENCY", required=True)))
    ttft = _float(env, "SERVEKIT_P95_TTFT_SECONDS")
    max_err = _need(_float(env, "SERVEKIT_MAX_ERROR_RATE", 0.01, positive=False))
    if max_err > 1.0:
        raise GateConfigError(f"SERVEKIT_MAX_ERROR_RATE={max_err} must be within 0..1")
    workload_raw = _raw(env, "SERVEKIT_WORKLOAD", False) or "chat"
    try:
        workload = WorkloadProfile(workload_raw)
    except ValueError:
        allowed = ", ".join(w.value for w in WorkloadProfile)
        raise GateConfigError(f"SERVEKIT_WORKLOAD={workload_raw!r} is not one of {allowed}") from None
    default_procs = default_processes(concurrency)
    load = LoadConfig(endpoint=endpoint, model=model, concurrency=concurrency, workload=workload,
                      max_tokens=_int(env, "SERVEKIT_MAX_TOKENS"),
                      request_timeout_s=_need(_float(env, "SERVEKIT_REQUEST_TIMEOUT_SECONDS", max(60.0, 4 * p95))))
    target = SlaTarget(p95_e2e_s=p95, p95_ttft_s=ttft, concurrency=concurrency, max_error_rate=max_err)
    plan = RunPlan(load=load, duration_s=_need(_float(env, "SERVEKIT_DURATION_SECONDS", 60.0)),
                   warmup_waves=int(_need(_int(env, "SERVEKIT_WARMUP_WAVES", 1))),
                   processes=int(_need(_int(env, "SERVEKIT_PROCESSES", default_procs))))
    return plan, target


def wait_healthy(endpoint: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(endpoint.rstrip("/") + "/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(2.0)


def served_models(endpoint: str, timeout_s: float = 10.0) -> list[str]:
    """The model names the endpoint's ``GET /v1/models`` lists; raises OSError when it cannot be reached.

    Checked before a run so that a wrong address or model name is reported as what it is, not as
    an SLA failure after a full measurement window of refused connections or 404s.
    """
    with urllib.request.urlopen(endpoint.rstrip("/") + "/v1/models", timeout=timeout_s) as r:
        body = json.loads(r.read().decode("utf-8"))
    return sorted(str(m.get("id")) for m in body.get("data", []) if isinstance(m, dict))


def main(env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        plan, target = plan_from_env(env)
        ready_timeout = _need(_float(env, "SERVEKIT_READY_TIMEOUT_SECONDS", 600.0))
    except GateConfigError as e:
        print(f"sla-gate: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    load = plan.load
    print(f"sla-gate: {load.model} at {load.endpoint}: p95 <= {target.p95_e2e_s}s at {load.concurrency} "
          f"concurrent ({load.workload.value}), window {plan.duration_s:.0f}s", file=sys.stderr)
    if not wait_healthy(load.endpoint, ready_timeout):
        print(f"sla-gate: error: {load.endpoint}/health not ready within {ready_timeout:.0f}s", file=sys.stderr)
        return EXIT_ENVIRONMENT
    try:
        served = served_models(load.endpoint)
    except (OSError, ValueError) as e:
        print(f"sla-gate: error: {load.endpoint}/v1/models: {e}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    if load.model not in served:
        print(f"sla-gate: error: {load.endpoint} does not serve {load.model!r} (serves: {', '.join(served)})",
              file=sys.stderr)
        return EXIT_USAGE
    last = [0.0]

    def progress(msg: str, _frac: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 5.0 or msg == "done":
            last[0] = now
            print(f"sla-gate: {msg}", file=sys.stderr, flush=True)

    report = evaluate(run(plan, progress), target)
    out_dir = env.get("SERVEKIT_REPORT_DIR")
    if out_dir:
        d = Path(out_dir)
        write_report(report, json_path=d / "report.json", markdown_path=d / "report.md", html_path=d / "report.html",
                     title=f"SLA gate: {load.model}")
    sys.stdout.write(to_markdown(report, f"SLA gate: {load.model}") + "\n")
    sys.stdout.write(json.dumps(report.to_json()) + "\n")
    sys.stdout.flush()
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
