"""One Locust load-generator process: ``python -m loadtests.worker '<json>'``.

Why a child process rather than Locust in the caller's process: Locust monkey-patches the whole
interpreter with gevent at import, which must not happen to the ``servekit`` CLI, to pytest or to
an asyncio server; in its own process the generator's CPU is also measured exactly (psutil on its
pid) and several processes can share a high concurrency, one per core. Timestamps stay comparable:
every process stamps ``time.perf_counter()``, which on Linux is the system-wide CLOCK_MONOTONIC.

Locust runs as a library (``Environment`` + ``LocalRunner``) with the users of
:mod:`loadtests.user`. Protocol, one JSON object per line:

- stdout: ``{"k": "ready"}``, then ``{"k": "s", ...Sample}`` per finished request (its ``user`` is
  the global user index), ``{"k": "tick", "t", "inflight", "lags"}`` twice a second (``lags``: how
  late each 50 ms probe sleep woke up, i.e. how late a timestamp taken then would have been; a
  saturated or CPU-throttled client shows here), and finally ``{"k": "done", ...}``.
- stdin: ``stop <grace seconds>``: start no new request, wait for those in flight up to the grace,
  report the ones still running as ``in_flight_at_stop`` samples, quit. EOF on stdin (the
  controller died) stops without grace.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import gevent
import gevent.os
import gevent.select
import locust  # gevent-monkey-patches this process on import (no ssl/socket user is imported before it)
from locust.env import Environment

from loadtests.config import API_KEY_ENV, LoadConfig
from loadtests.prompts import PromptFactory
from loadtests.stream import INFLIGHT, failed
from loadtests.user import CompletionsUser, Control

TICK_S = 0.5
FLUSH_S = 0.1
LAG_PROBE_S = 0.05


def main(argv: list[str] | None = None) -> int:
    args = json.loads((argv or sys.argv[1:])[0])
    cfg = LoadConfig.from_json(args["load"])
    first_user: int = args.get("firstUser", 0)
    users: int = args.get("users", cfg.concurrency)
    out_fd = sys.stdout.fileno()
    # Cooperative writes: when the pipe to the controller is full (a burst of finished requests),
    # only the writing greenlet waits; a blocking write would stall every stream's timestamps.
    gevent.os.make_nonblocking(out_fd)
    pending: list[str] = []

    def emit(obj: dict[str, Any]) -> None:
        pending.append(json.dumps(obj, separators=(",", ":")))

    def flush() -> None:
        if pending:
            data = memoryview(("\n".join(pending) + "\n").encode())
            pending.clear()
            while data:
                data = data[gevent.os.nb_write(out_fd, data):]

    factory = PromptFactory(model=cfg.model, workload=cfg.workload, nonce=cfg.nonce,
                            seed=cfg.seed + first_user, chat=cfg.chat, max_tokens=cfg.max_tokens,
                            prompt_scale=cfg.prompt_scale)
    control = Control(factory=factory, sink=lambda s: emit({"k": "s", **s.to_json()}),
                      request_timeout_s=cfg.request_timeout_s, failure_backoff_s=cfg.failure_backoff_s,
                      api_key=os.environ.get(API_KEY_ENV) or None, next_user=first_user)
    user_cls = type("SlaUser", (CompletionsUser,), {"host": cfg.endpoint.rstrip("/"), "control": control,
                                                    "abstract": False})
    env = Environment(user_classes=[user_cls], host=cfg.endpoint.rstrip("/"))
    runner = env.create_local_runner()
    lags: list[float] = []

    def lag_probe() -> None:
        while True:
            t = time.perf_counter()
            gevent.sleep(LAG_PROBE_S)
            lags.append(round(max(0.0, time.perf_counter() - t - LAG_PROBE_S), 6))

    def ticker() -> None:
        n = 0
        while True:
            gevent.sleep(FLUSH_S)  # small, frequent writes: a big one can block the loop on a full pipe
            n += 1
            if n * FLUSH_S >= TICK_S:
                n = 0
                emit({"k": "tick", "t": time.perf_counter(), "inflight": len(control.inflight), "lags": lags[:]})
                lags.clear()
            flush()

    def stop(grace: float) -> None:
        control.stopping = True
        t_stop = time.perf_counter()
        while control.inflight and time.perf_counter() - t_stop < grace:
            gevent.sleep(0.02)
        now = time.perf_counter()
        left = list(control.inflight.items())
        control.sink = lambda s: None  # the users killed below must not report after this point
        for rid, (user, start) in left:
            emit({"k": "s", **failed(user, start, now, INFLIGHT,
                                     f"still running {now - start:.2f}s after send when the run stopped",
                                     rid).to_json()})
        stats = env.stats.get(factory_path(cfg), "POST")
        emit({"k": "done", "inflightAtStop": len(left), "locustRequests": stats.num_requests,
              "locustP95E2eMs": stats.get_response_time_percentile(0.95) if stats.num_requests else None})
        flush()
        runner.quit()

    def commands() -> None:
        fd = sys.stdin.fileno()
        buf = b""
        while True:
            gevent.select.select([fd], [], [])
            data = os.read(fd, 4096)
            if not data:
                stop(0.0)
                return
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                parts = line.decode().split()
                if parts and parts[0] == "stop":
                    stop(float(parts[1]) if len(parts) > 1 else 0.0)
                    return

    emit({"k": "ready", "pid": os.getpid(), "t": time.perf_counter(), "locust": locust.__version__})
    flush()
    gevent.spawn(lag_probe)
    gevent.spawn(ticker)
    cmd = gevent.spawn(commands)
    runner.start(users, spawn_rate=max(float(users), 100.0))
    cmd.join()
    if runner.greenlet is not None:
        runner.greenlet.join(timeout=10)
    flush()
    return 0


def factory_path(cfg: LoadConfig) -> str:
    return "/v1/chat/completions" if cfg.chat else "/v1/completions"


if __name__ == "__main__":
    sys.exit(main())
