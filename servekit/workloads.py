"""Workload profiles: the token shapes of the field report's tasks (one home: data/workloads.yaml)."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import Field

from servekit.spec import Frozen, Source, WorkloadProfile

DATA_FILE = Path(__file__).parent / "data" / "workloads.yaml"
Z95 = 1.6448536269514722  # standard normal quantile at 0.95


class TokenShape(Frozen):
    prompt_median_tokens: Annotated[int, Field(gt=0)]
    prompt_p95_tokens: Annotated[int, Field(gt=0)]
    output_tokens: Annotated[int, Field(gt=0)]
    shared_prefix_tokens: Annotated[int, Field(ge=0)] = 0

    @property
    def sigma(self) -> float:
        """Log-normal sigma from median and p95: p95 = median * exp(sigma * z95)."""
        return math.log(self.prompt_p95_tokens / self.prompt_median_tokens) / Z95

    @property
    def prompt_mean_tokens(self) -> float:
        """Log-normal mean: median * exp(sigma^2 / 2)."""
        return self.prompt_median_tokens * math.exp(self.sigma**2 / 2)

    @property
    def mean_sequence_tokens(self) -> float:
        """Average tokens a sequence holds in the KV cache over its life (prompt + half the output)."""
        return self.prompt_mean_tokens + self.output_tokens / 2


class _WorkloadFile(Frozen):
    source: Source
    profiles: dict[WorkloadProfile, TokenShape]


@cache
def load_profiles() -> dict[WorkloadProfile, TokenShape]:
    data = _WorkloadFile.model_validate(yaml.safe_load(DATA_FILE.read_text()))
    missing = set(WorkloadProfile) - set(data.profiles)
    if missing:
        raise ValueError(f"{DATA_FILE}: profiles missing: {sorted(m.value for m in missing)}")
    return data.profiles


def profile(name: WorkloadProfile) -> TokenShape:
    return load_profiles()[name]
