"""Run one closed-loop load test: Locust worker processes, a warm-up wave, a timed window, a drain.

Protocol of a run (every phase has a deadline, so a run always ends):

1. Start ``processes`` Locust workers (:mod:`loadtests.worker`), users split between them.
2. Warm-up: wait until every user has finished ``warmup_waves`` requests (a cold pod's first
   requests compile CUDA graphs and fill caches); those requests are not measured. If that takes
   longer than ``warmup_timeout_s`` the window starts anyway and the result says so.
3. Window: ``duration_s`` seconds (extended up to 3x while fewer than ``min_window_requests``
   were sent, so a short sweep step at concurrency 1 still has a percentile). A request belongs
   to the window when it was *sent* in it. Client CPU (psutil, per worker pid, once a second), the
   workers' event-loop lag and, when the endpoint has one, vLLM's ``/metrics`` are sampled
   meanwhile.
4. Stop: the workers start no new request and drain the ones in flight up to ``drain_grace_s``
   (default: the request timeout, so every request ends or times out); whatever is still running
   then is reported as an ``in_flight_at_stop`` failure, never dropped. Requests sent in the window
   but finished during the drain are measured, so a long request is not lost to the window's end.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import psutil

from loadtests import servermetrics
from loadtests.config import API_KEY_ENV, LoadConfig
from loadtests.stream import Sample

Progress = Callable[[str, float], None]  # (message, fraction of the run done)


@dataclass(frozen=True)
class RunPlan:
    load: LoadConfig
    duration_s: float
    warmup_waves: int = 1
    warmup_timeout_s: float | None = None  # default: waves x request timeout + 10 s
    drain_grace_s: float | None = None  # default: the request timeout
    processes: int = 1
    cpu_affinity: tuple[int, ...] | None = None  # pin worker i to cpu_affinity[i % len]
    scrape_metrics: bool = True
    ready_timeout_s: float = 60.0
    min_window_requests: int = 0  # extend the window (up to 3 x duration) until this many were sent

    @property
    def max_window_s(self) -> float:
        return self.duration_s * 3 if self.min_window_requests else self.duration_s

    @property
    def warmup_deadline_s(self) -> float:
        if self.warmup_timeout_s is not None:
            return self.warmup_timeout_s
        return self.warmup_waves * self.load.request_timeout_s + 10.0

    @property
    def grace_s(self) -> float:
        return self.load.request_timeout_s if self.drain_grace_s is None else self.drain_grace_s

    @property
    def hard_limit_s(self) -> float:
        """The longest a run can take, by construction (start + warm-up + window + drain + exit)."""
        return self.ready_timeout_s + self.warmup_deadline_s + self.max_window_s + self.grace_s + 30.0


@dataclass
class RunResult:
    plan: RunPlan
    samples: list[Sample]  # every request, warm-up included
    t0: float
    t1: float
    warmup_complete: bool
    cpu_percent: list[float]  # once a second in the window: the busiest worker's CPU, % of one core
    loop_lag_s: list[float]  # the workers' event-loop lag probes in the window (how late a wake-up was)
    inflight_at_stop: int
    server: servermetrics.ServerWindow | None
    wall_s: float
    locust_p95_e2e_ms: float | None = None
    notes: list[str] = field(default_factory=list)

    def window(self) -> list[Sample]:
        return [s for s in self.samples if self.t0 <= s.start < self.t1]


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    ps: psutil.Process | None = None
    ready: bool = False
    done: bool = False
    exited: bool = False
    done_msg: dict[str, Any] = field(default_factory=dict)
    last_inflight: int = 0


def _reader(i: int, stream: IO[bytes], q: queue.Queue[tuple[int, dict[str, Any] | None]]) -> None:
    with stream:
        for line in stream:
            try:
                q.put((i, json.loads(line)))
            except ValueError:
                continue
    q.put((i, None))


def run(plan: RunPlan, progress: Progress | None = None) -> RunResult:
    """Run the plan; never raises for what the server does (that is in the result)."""
    load = plan.load
    if load.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    procs = max(1, min(plan.processes, load.concurrency))
    began = time.perf_counter()
    q: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
    workers: list[_Worker] = []
    share, extra = divmod(load.concurrency, procs)
    first = 0
    env = dict(os.environ)
    for i in range(procs):
        users = share + (1 if i < extra else 0)
        arg = json.dumps({"load": load.to_json(), "firstUser": first, "users": users})
        first += users
        log = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the run ends
        proc = subprocess.Popen([sys.executable, "-m", "loadtests.worker", arg], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=env)
        if plan.cpu_affinity:
            os.sched_setaffinity(proc.pid, {plan.cpu_affinity[i % len(plan.cpu_affinity)]})
        assert proc.stdout is not None
        threading.Thread(target=_reader, args=(i, proc.stdout, q), daemon=True).start()
        workers.append(_Worker(proc=proc, log=log))

    samples: list[Sample] = []
    notes: list[str] = []
    warm_users: dict[int, int] = {}
    t0 = t1 = 0.0
    warmup_complete = False
    cpu: list[float] = []
    lags: list[float] = []
    server = servermetrics.ServerWindow() if plan.scrape_metrics else None
    headers = {"Authorization": f"Bearer {k}"} if (k := os.environ.get(API_KEY_ENV)) else {}
    before: servermetrics.Series | None = None
    phase = "start"
    phase_began = time.perf_counter()
    next_sample = 0.0
    stop_sent_at = 0.0

    def say(msg: str, frac: float) -> None:
        if progress is not None:
            progress(msg, frac)

    def handle(i: int, msg: dict[str, Any] | None) -> None:
        nonlocal warmup_complete
        w = workers[i]
        if msg is None:
            w.exited = True
            return
        kind = msg.get("k")
        if kind == "s":
            s = Sample.from_json({k: v for k, v in msg.items() if k != "k"})
            samples.append(s)
            if phase == "warmup":
                warm_users[s.user] = warm_users.get(s.user, 0) + 1
        elif kind == "tick":
            w.last_inflight = int(msg.get("inflight", 0))
            if phase == "window":
                lags.extend(float(x) for x in msg.get("lags", ()))
        elif kind == "ready":
            w.ready = True
            try:
                w.ps = psutil.Process(w.proc.pid)
                w.ps.cpu_percent(None)
            except psutil.Error:
                w.ps = None
        elif kind == "done":
            w.done = True
            w.done_msg = msg

    def drain_queue(block_s: float) -> None:
        try:
            i, msg = q.get(timeout=block_s)
        except queue.Empty:
            return
        handle(i, msg)
        while True:
            try:
                i, msg = q.get_nowait()
            except queue.Empty:
                return
            handle(i, msg)

    def stop_all(grace: float) -> None:
        for w in workers:
            if w.proc.poll() is None and w.proc.stdin is not None:
                try:
                    w.proc.stdin.write(f"stop {grace}\n".encode())
                    w.proc.stdin.flush()
                except OSError:
                    pass

    try:
        say("starting load generator", 0.0)
        while True:
            drain_queue(0.05)
            now = time.perf_counter()
            if phase == "start":
                if all(w.ready for w in workers):
                    phase, phase_began = "warmup", now
                    say(f"warm-up: {load.concurrency} users, {plan.warmup_waves} wave(s) excluded", 0.02)
                elif any(w.exited for w in workers) or now - phase_began > plan.ready_timeout_s:
                    notes.append("the load generator did not start: " + _tail(workers))
                    t0 = t1 = now
                    break
            elif phase == "warmup":
                done_users = sum(1 for n in warm_users.values() if n >= plan.warmup_waves)
                timed_out = now - phase_began > plan.warmup_deadline_s
                if done_users >= load.concurrency or timed_out:
                    warmup_complete = not timed_out
                    if timed_out:
                        notes.append(f"warm-up incomplete: {done_users}/{load.concurrency} users finished "
                                     f"{plan.warmup_waves} request(s) within {plan.warmup_deadline_s:.0f}s")
                    if server is not None:
                        before = servermetrics.scrape(load.endpoint, headers)
                    t0 = time.perf_counter()
                    t1 = t0 + plan.duration_s
                    phase, next_sample = "window", t0 + 1.0
                    for w in workers:
                        if w.ps is not None:
                            try:
                                w.ps.cpu_percent(None)
                            except psutil.Error:
                                w.ps = None
            elif phase == "window":
                if now >= next_sample:
                    next_sample += 1.0
                    busiest = 0.0
                    for w in workers:
                        if w.ps is not None:
                            try:
                                busiest = max(busiest, w.ps.cpu_percent(None))
                            except psutil.Error:
                                w.ps = None
                    cpu.append(busiest)
                    if server is not None:
                        snap = servermetrics.scrape(load.endpoint, headers, timeout=0.5)
                        if snap is None:
                            server.scrape_failures += 1
                        else:
                            r = servermetrics.gauge(snap, "vllm:num_requests_running", load.model)
                            wt = servermetrics.gauge(snap, "vllm:num_requests_waiting", load.model)
                            if r is not None:
                                server.running.append(r)
                            if wt is not None:
                                server.waiting.append(wt)
                    in_window = sum(1 for s in samples if s.start >= t0)
                    say(f"measuring: {now - t0:.0f}/{plan.duration_s:.0f}s, {in_window} requests",
                        0.05 + 0.9 * (now - t0) / plan.duration_s)
                if now >= t1 and plan.min_window_requests and now < t0 + plan.max_window_s:
                    sent = sum(1 for s in samples if s.start >= t0) + sum(w.last_inflight for w in workers)
                    if sent < plan.min_window_requests:
                        t1 = now + 0.25  # too few requests for a percentile yet: keep measuring
                if now >= t1:
                    if server is not None and before is not None:
                        after = servermetrics.scrape(load.endpoint, headers)
                        if after is not None:
                            server.e2e = servermetrics.delta(before, after, "vllm:e2e_request_latency_seconds",
                                                             load.model)
                            server.ttft = servermetrics.delta(before, after, "vllm:time_to_first_token_seconds",
                                                              load.model)
                    stop_all(plan.grace_s)
                    stop_sent_at = time.perf_counter()
                    phase = "drain"
                    say(f"draining requests in flight (up to {plan.grace_s:.0f}s)", 0.95)
                if all(w.exited for w in workers):
                    notes.append("the load generator exited during the window: " + _tail(workers))
                    t1 = now
                    break
            elif phase == "drain":
                if all(w.done or w.exited for w in workers):
                    break
                if now - stop_sent_at > plan.grace_s + 20.0:
                    notes.append("a load generator did not stop in time and was killed")
                    break
    finally:
        for w in workers:
            if w.proc.poll() is None:
                try:
                    w.proc.wait(10 if w.done else 0.1)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait(5)
            if w.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    w.proc.stdin.close()
        # Messages that were still in the pipe when the worker exited.
        deadline = time.perf_counter() + 5.0
        while not all(w.exited for w in workers) and time.perf_counter() < deadline:
            drain_queue(0.05)
        while not q.empty():
            drain_queue(0.0)
        for w in workers:
            w.log.close()

    inflight_at_stop = sum(int(w.done_msg.get("inflightAtStop", 0)) if w.done else w.last_inflight
                           for w in workers)
    locust_p95 = [float(v) for w in workers if (v := w.done_msg.get("locustP95E2eMs"))]
    say("done", 1.0)
    return RunResult(plan=plan, samples=samples, t0=t0, t1=t1, warmup_complete=warmup_complete, cpu_percent=cpu,
                     loop_lag_s=lags, inflight_at_stop=inflight_at_stop, server=server,
                     wall_s=time.perf_counter() - began,
                     locust_p95_e2e_ms=max(locust_p95) if locust_p95 else None, notes=notes)


def _tail(workers: list[_Worker]) -> str:
    for w in workers:
        try:
            w.log.seek(0)
            text = w.log.read().decode(errors="replace").strip()
        except (OSError, ValueError):
            continue
        if text:
            return text.splitlines()[-1][:300]
    return "no output"
