"""Request bodies drawn from a workload profile (servekit/data/workloads.yaml, via servekit.workloads).

- Prompt length: log-normal with the profile's median and p95 (``TokenShape.sigma``), in words;
  one common English word is about one token, and the report uses the server's own
  ``usage.prompt_tokens`` anyway.
- Prefix cache: every prompt starts with ``run <nonce> request <user>-<seq>``, unique per run and
  per request, so a warm prefix cache (vLLM hashes blocks from the first token on) cannot flatter
  the result. Only a profile that declares ``sharedPrefixTokens`` gets a prefix common to all
  requests (its instructions / schema), placed before the unique part, as in production.
- Output: ``max_tokens`` = the profile's output length with ``ignore_eos`` (and ``min_tokens``),
  so every run asks the same decode work of the server; the expected finish reason is "length".
- Usage: ``stream_options.include_usage`` so token counts come from the server.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass

from servekit.spec import WorkloadProfile
from servekit.workloads import profile

_TEXT = """time year people way day man thing woman life child world school state family student group
    country problem hand part place case week company system program question work government number
    night point home water room mother area money story fact month lot right study book eye job word
    business issue side kind head house service friend father power hour game line end member law car
    city community name president team minute idea kid body information back parent face others level
    office door health person art war history party result change morning reason research girl guy
    moment air teacher force education contract invoice clause payment term risk data table column
    function value error request model token batch queue latency report summary schedule pipeline"""
WORDS = tuple(_TEXT.split())
POOL_WORDS = 65536


@dataclass(frozen=True)
class RequestPlan:
    body: bytes
    expected_tokens: int
    prompt_words: int


class PromptFactory:
    """Builds one request body per (user, seq); deterministic for a given seed and nonce."""

    def __init__(self, *, model: str, workload: WorkloadProfile, nonce: str, seed: int, chat: bool = True,
                 max_tokens: int | None = None, prompt_scale: float = 1.0) -> None:
        shape = profile(workload)
        self.model = model
        self.chat = chat
        self.workload = workload
        self.nonce = nonce
        self.median = max(8.0, shape.prompt_median_tokens * prompt_scale)
        self.sigma = shape.sigma
        self.max_tokens = max_tokens or shape.output_tokens
        self.shared_words = round(shape.shared_prefix_tokens * prompt_scale)
        self.rng = random.Random(f"{seed}/{nonce}")
        # One random pool, sliced at random offsets: cheap per request, and the unique nonce in
        # front already makes every prompt distinct.
        self.pool = [self.rng.choice(WORDS) for _ in range(POOL_WORDS)]
        # The shared prefix does not depend on the nonce: it is the same across runs, as a real
        # system prompt would be.
        fixed = random.Random(f"shared/{workload.value}")
        self.shared = " ".join(fixed.choice(WORDS) for _ in range(self.shared_words))

    def draw_length(self) -> int:
        return max(8, round(self.median * math.exp(self.sigma * self.rng.gauss(0.0, 1.0))))

    def build(self, user: int, seq: int) -> RequestPlan:
        total = self.draw_length()
        unique = max(8, total - self.shared_words)
        head = f"run {self.nonce} request {user}-{seq}"
        n = unique - 4
        off = self.rng.randrange(POOL_WORDS - min(n, POOL_WORDS - 1))
        filler = self.pool[off:off + n]
        while len(filler) < n:  # prompts longer than the pool wrap around it
            filler += self.pool[: n - len(filler)]
        words = len(filler) + 4 + self.shared_words
        body: dict[str, object] = {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "min_tokens": self.max_tokens,
            "ignore_eos": True,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.chat:
            messages: list[dict[str, str]] = []
            if self.shared:
                messages.append({"role": "system", "content": self.shared})
            if self.workload is WorkloadProfile.CHAT:
                # Multi-turn history: alternate user/assistant turns of ~100 words, ending on the user.
                turns = max(1, min(9, n // 100)) | 1  # odd, so the last turn is the user's
                step = max(1, len(filler) // turns)
                parts = [filler[i * step:(i + 1) * step] for i in range(turns - 1)] + [filler[(turns - 1) * step:]]
                for i, part in enumerate(parts):
                    text = " ".join(part)
                    messages.append({"role": "user" if i % 2 == 0 else "assistant",
                                     "content": f"{head} {text}" if i == 0 else text})
            else:
                messages.append({"role": "user", "content": f"{head} {' '.join(filler)}"})
            body["messages"] = messages
        else:
            body["prompt"] = " ".join(x for x in (self.shared, head, " ".join(filler)) if x)
        return RequestPlan(json.dumps(body).encode(), self.max_tokens, words)
