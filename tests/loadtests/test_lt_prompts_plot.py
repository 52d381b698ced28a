"""Request bodies follow the workload profiles; the PNG plot is a real PNG with the SLA where it belongs."""

from __future__ import annotations

import json
import math
import statistics
import struct
import zlib

from loadtests import plot
from loadtests.prompts import PromptFactory
from servekit.spec import WorkloadProfile
from servekit.workloads import profile


def _words(body: dict[str, object]) -> list[str]:
    msgs = body["messages"]
    assert isinstance(msgs, list)
    return " ".join(m["content"] for m in msgs).split()


def test_bodies_follow_the_profile() -> None:
    f = PromptFactory(model="m", workload=WorkloadProfile.CODE, nonce="abc123", seed=1)
    shape = profile(WorkloadProfile.CODE)
    bodies = [json.loads(f.build(u, s).body) for u in range(4) for s in range(100)]
    lengths = sorted(len(_words(b)) for b in bodies)
    # Median and p95 of the drawn lengths near the profile's (log-normal sampling noise, n=400).
    assert abs(statistics.median(lengths) / shape.prompt_median_tokens - 1) < 0.1
    p95 = lengths[math.ceil(0.95 * len(lengths)) - 1]
    assert abs(p95 / shape.prompt_p95_tokens - 1) < 0.2
    b = bodies[0]
    assert b["max_tokens"] == shape.output_tokens and b["ignore_eos"] is True and b["stream"] is True
    assert b["stream_options"] == {"include_usage": True}


def test_unique_prefix_per_request_and_run() -> None:
    f = PromptFactory(model="m", workload=WorkloadProfile.SUMMARIZATION, nonce="run1", seed=1)
    g = PromptFactory(model="m", workload=WorkloadProfile.SUMMARIZATION, nonce="run2", seed=1)
    heads = {tuple(_words(json.loads(x.build(u, s).body))[:8]) for x in (f, g) for u in range(3) for s in range(3)}
    assert len(heads) == 18  # no two requests share their first tokens: no prefix-cache hit
    assert all(h[1] in ("run1", "run2") for h in heads)


def test_shared_prefix_only_when_the_profile_declares_it() -> None:
    shared = profile(WorkloadProfile.EXTRACTION).shared_prefix_tokens
    assert shared > 0
    f = PromptFactory(model="m", workload=WorkloadProfile.EXTRACTION, nonce="a", seed=1)
    g = PromptFactory(model="m", workload=WorkloadProfile.EXTRACTION, nonce="b", seed=2)
    systems = {json.loads(x.build(u, 1).body)["messages"][0]["content"] for x in (f, g) for u in range(3)}
    assert len(systems) == 1 and len(next(iter(systems)).split()) == shared
    chat = json.loads(PromptFactory(model="m", workload=WorkloadProfile.CHAT, nonce="a", seed=1).build(0, 1).body)
    roles = [m["role"] for m in chat["messages"]]
    assert "system" not in roles and roles[-1] == "user"


def _decode_png(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    rows = [raw[y * (3 * w + 1) + 1:(y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(raw[y * (3 * w + 1)] == 0 for y in range(h))
    return w, h, b"".join(rows)


def test_histogram_png_marks_the_sla() -> None:
    png = plot.latency_histogram([0.5, 0.6, 0.7, 0.8, 2.5], sla_s=2.0, p95_s=0.8, ci=(0.7, 2.5))
    w, h, px = _decode_png(png)
    assert (w, h) == (800, 400)
    reds = {x for y in range(h) for x in range(w) if px[(y * w + x) * 3:(y * w + x) * 3 + 3] == bytes(plot.SLA_RED)}
    # x axis: 0 .. 2.5 s (the slowest sample; ticks of 0.5 s) over pixels 70 .. 780.
    expected = round(70 + 2.0 / 2.5 * (800 - 20 - 70))
    assert any(abs(x - expected) <= 2 for x in reds)
