"""How much latency does the load generator itself add, and how much CPU does it burn?

For 64, 256 and 1024 concurrent streams: one Locust worker process pinned to one core drives the
emulator (pinned to the other core when there is one). The emulator stamps each request's TTFT
and end-to-end time when it writes the bytes; the client stamps them when the bytes come off its
socket. Matched by request id, ``client - server`` is the latency the client (its event loop,
HTTP and SSE handling, the loopback) added. Reported: p50/p95 of that difference for e2e and
TTFT, the client's CPU (% of one core, mean over the window) and its event-loop lag.
Target: p95 added latency <= 5 ms at 256 streams.

Two server scenarios:

- ``spread``: each request runs at its own speed (per-request log-normal factor, sigma 0.1), so
  chunks of different streams arrive spread out in time, as with mixed prompt lengths.
- ``lockstep``: every stream emits its token in the same instant (no jitter, all started
  together), like one engine step of a batch arriving at once: the worst case for a
  single-threaded client, which must parse the whole burst before the last stream's chunk is
  stamped.

The emulator's decode slows with the batch like a real server (token delay 40 ms up to 256
running, 100 ms at 1024), so the chunk rate is realistic: ~6k/s at 256 streams, ~10k/s at 1024.

On a shared machine other jobs' CPU shows up as added latency (the client waits to be
scheduled); the load average is printed, and ``--realtime`` runs the benchmark's processes under
SCHED_RR (root; the kernel still reserves 5% of each second for others) to measure the client
rather than its neighbours.

Run: ``.venv/bin/python benchmarks/loadtest_client_overhead.py [--duration 10] [--levels 64,256,1024]
[--scenarios spread,lockstep] [--realtime]``
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import psutil

from loadtests.config import LoadConfig
from loadtests.emulator import EmulatorConfig, EmulatorProcess, LatencyModel
from loadtests.runner import RunPlan, run
from loadtests.sla import nearest_rank

TOKENS = 32
JITTER = {"spread": 0.1, "lockstep": 0.0}


def _pct(values: list[float], q: float) -> float:
    v = nearest_rank(sorted(values), q)
    return math.nan if v is None else v


def measure(level: int, duration: float, cores: list[int], jitter: float) -> dict[str, float]:
    latency = LatencyModel(ttft_s=0.1, itl_s=0.04, knee=256, itl_slope_s=0.06 / 768, jitter=jitter,
                           max_num_seqs=4096)
    client_core, server_core = cores[0], cores[-1]
    with EmulatorProcess(EmulatorConfig(latency=latency), cpu=server_core if len(cores) > 1 else None) as emu:
        server = psutil.Process(emu.pid)
        load = LoadConfig(endpoint=emu.url, model="emulated", concurrency=level, max_tokens=TOKENS,
                          request_timeout_s=60.0, prompt_scale=0.1)
        server.cpu_percent(None)
        result = run(RunPlan(load=load, duration_s=duration, cpu_affinity=(client_core,)))
        server_cpu = server.cpu_percent(None)
        records = {r["id"]: r for r in emu.records()}
    ok = [s for s in result.window() if s.ok and s.request_id in records]
    e2e = [s.e2e - records[s.request_id]["e2eS"] for s in ok if s.e2e is not None]
    ttft = [s.ttft - records[s.request_id]["ttftS"] for s in ok if s.ttft is not None]
    span = result.t1 - result.t0
    return {
        "streams": level, "requests": len(ok), "failures": sum(1 for s in result.window() if not s.ok),
        "e2e_p50_ms": _pct(e2e, 0.5) * 1000, "e2e_p95_ms": _pct(e2e, 0.95) * 1000,
        "ttft_p50_ms": _pct(ttft, 0.5) * 1000, "ttft_p95_ms": _pct(ttft, 0.95) * 1000,
        "client_cpu_pct": sum(result.cpu_percent) / max(1, len(result.cpu_percent)),
        "loop_lag_p95_ms": _pct(result.loop_lag_s, 0.95) * 1000,
        "chunks_per_s": len(ok) * TOKENS / span if span > 0 else math.nan,
        "server_cpu_pct": server_cpu,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--levels", default="64,256,1024")
    p.add_argument("--scenarios", default="spread,lockstep")
    p.add_argument("--realtime", action="store_true", help="run under SCHED_RR priority 1 (needs root)")
    a = p.parse_args()
    if a.realtime:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))  # inherited by the emulator and the workers
    cores = sorted(os.sched_getaffinity(0))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cores {cores}: client pinned to {cores[0]}, emulator to {cores[-1]}; {TOKENS} output tokens per "
          f"request; {a.duration:.0f}s window per level; scheduling {'SCHED_RR' if a.realtime else 'normal'}; "
          f"load average {load}", flush=True)
    header = (f"{'scenario':>9} {'streams':>7} {'requests':>8} {'fail':>4} {'e2e p50':>8} {'e2e p95':>8} "
              f"{'ttft p50':>8} {'ttft p95':>8} {'client CPU':>10} {'lag p95':>8} {'chunks/s':>8} {'server CPU':>10}")
    print(header)
    rows: list[tuple[str, dict[str, float]]] = []
    for scenario in a.scenarios.split(","):
        for level in (int(x) for x in a.levels.split(",")):
            r = measure(level, a.duration, cores, JITTER[scenario])
            rows.append((scenario, r))
            print(f"{scenario:>9} {r['streams']:>7} {r['requests']:>8} {r['failures']:>4} "
                  f"{r['e2e_p50_ms']:>6.2f}ms {r['e2e_p95_ms']:>6.2f}ms {r['ttft_p50_ms']:>6.2f}ms "
                  f"{r['ttft_p95_ms']:>6.2f}ms {r['client_cpu_pct']:>9.0f}% {r['loop_lag_p95_ms']:>6.1f}ms "
                  f"{r['chunks_per_s']:>8.0f} {r['server_cpu_pct']:>9.0f}%", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for scenario, r in rows:
        if r["streams"] == 256:
            verdict = "met" if r["e2e_p95_ms"] <= 5.0 else "MISSED"
            print(f"target p95 added e2e latency <= 5 ms at 256 streams ({scenario}): {verdict} "
                  f"({r['e2e_p95_ms']:.2f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
