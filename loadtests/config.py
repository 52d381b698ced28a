"""What one load run asks for (shared by the controlling process and the Locust worker processes)."""

from __future__ import annotations

import math
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from servekit.spec import WorkloadProfile

USERS_PER_PROCESS = 256  # streams one Locust process carries comfortably (benchmarks/loadtest_client_overhead.py)
API_KEY_ENV = "SERVEKIT_API_KEY"  # read by the worker, sent as a bearer token, never logged or reported


@dataclass(frozen=True)
class LoadConfig:
    """Closed-loop load: ``concurrency`` users, each sending its next request as soon as one ends."""

    endpoint: str
    model: str
    concurrency: int
    workload: WorkloadProfile = WorkloadProfile.CHAT
    chat: bool = True  # /v1/chat/completions; False for /v1/completions
    max_tokens: int | None = None  # default: the profile's output length
    prompt_scale: float = 1.0  # scales prompt lengths (a dry run against the emulator can use less)
    request_timeout_s: float = 60.0  # send -> end of stream; a slower request is a failure
    failure_backoff_s: float = 0.05
    seed: int = 0
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))  # new per run: unique prompt prefixes

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["workload"] = self.workload.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LoadConfig:
        return cls(**{**d, "workload": WorkloadProfile(d["workload"])})

    def with_concurrency(self, n: int) -> LoadConfig:
        return replace(self, concurrency=n)


def default_processes(concurrency: int) -> int:
    """One load-generator process per USERS_PER_PROCESS users, at most one per CPU."""
    return max(1, min(os.cpu_count() or 1, math.ceil(concurrency / USERS_PER_PROCESS)))
