"""Per-request metric definitions on hand-made SSE byte streams with hand-chosen arrival times."""

from __future__ import annotations

import json

import pytest

from loadtests.stream import (
    ERROR_EVENT,
    FINISH_REASON,
    PROTOCOL,
    TOKEN_MISMATCH,
    TRUNCATED,
    StreamAccumulator,
)


def ev(obj: object) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
    if content is not None:
        delta["content"] = content
    return ev({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def usage(n: int) -> bytes:
    return ev({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}})


DONE = b"data: [DONE]\n\n"


def test_ttft_e2e_tpot_follow_the_definitions() -> None:
    acc = StreamAccumulator(chat=True)
    acc.feed(chunk(role=True), 10.05)  # role-only chunk: not a token
    acc.feed(chunk(""), 10.10)  # empty content: not a token
    acc.feed(chunk(" a"), 10.30)
    acc.feed(chunk(" b") + chunk(" c"), 10.50)  # two chunks in one read share its stamp
    acc.feed(chunk(" d", finish="length"), 10.90)
    acc.feed(usage(4), 11.50)  # usage and [DONE] are after the last content: not in e2e
    acc.feed(DONE, 11.60)
    s = acc.sample(user=0, start=10.0, end=11.70, expected_finish="length", expected_tokens=4)
    assert s.ok, s.detail
    assert s.ttft == pytest.approx(0.30)
    assert s.e2e == pytest.approx(0.90)
    assert s.tpot == pytest.approx((0.90 - 0.30) / 3)
    assert s.close == pytest.approx(1.70)
    assert s.output_tokens == 4 and s.tokens_from_usage and s.prompt_tokens == 7


def test_events_split_across_reads_and_crlf() -> None:
    raw = (chunk(" a") + chunk(" b", finish="length") + usage(2) + DONE).replace(b"\n", b"\r\n")
    acc = StreamAccumulator(chat=True)
    cut = raw.index(b"\r\n\r\n") + 1  # cut inside the first event's terminator
    acc.feed(raw[:cut], 1.0)
    acc.feed(raw[cut:cut + 30], 2.0)
    acc.feed(raw[cut + 30:], 3.0)
    s = acc.sample(user=0, start=0.0, end=3.0, expected_finish="length", expected_tokens=2)
    assert s.ok, s.detail
    # The first event is complete only once its terminator arrives, at t=2.0.
    assert s.ttft == pytest.approx(2.0) and s.e2e == pytest.approx(3.0)


def test_completions_api_text_field() -> None:
    acc = StreamAccumulator(chat=False)
    acc.feed(ev({"choices": [{"index": 0, "text": " x", "finish_reason": None}]}), 0.2)
    acc.feed(ev({"choices": [{"index": 0, "text": " y", "finish_reason": "length"}]}), 0.4)
    acc.feed(usage(2) + DONE, 0.5)
    s = acc.sample(user=0, start=0.0, end=0.5, expected_finish="length", expected_tokens=2)
    assert s.ok and s.ttft == pytest.approx(0.2) and s.e2e == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (chunk(" a") + chunk(" b"), TRUNCATED),  # no finish_reason, no [DONE]
        (chunk(" a") + chunk(" b", finish="length") + usage(2), TRUNCATED),  # no [DONE]
        (chunk(" a") + b'event: error\ndata: {"error": {"message": "boom"}}\n\n' + DONE, ERROR_EVENT),
        (chunk(" a") + ev({"error": {"message": "oom", "code": 500}}) + DONE, ERROR_EVENT),
        (chunk(" a", finish="stop") + usage(1) + DONE, FINISH_REASON),
        (chunk(" a") + chunk(" b", finish="length") + usage(3) + DONE, TOKEN_MISMATCH),
        (chunk(role=True) + chunk(None, finish="length") + usage(0) + DONE, PROTOCOL),
        (b"data: {not json\n\n" + DONE, PROTOCOL),
    ],
)
def test_failures_are_classified(body: bytes, kind: str) -> None:
    acc = StreamAccumulator(chat=True)
    acc.feed(body, 1.0)
    s = acc.sample(user=0, start=0.0, end=1.0, expected_finish="length", expected_tokens=2 if kind != FINISH_REASON
                   else 1)
    assert not s.ok and s.error == kind, (s.error, s.detail)
    assert s.detail


def test_without_usage_tokens_are_counted_as_chunks_and_flagged() -> None:
    acc = StreamAccumulator(chat=True)
    acc.feed(chunk(" a") + chunk(" b") + chunk(" c", finish="length") + DONE, 1.0)
    s = acc.sample(user=0, start=0.0, end=1.0, expected_finish="length", expected_tokens=3)
    assert s.ok and s.output_tokens == 3 and not s.tokens_from_usage


def test_reasoning_delta_counts_as_first_token() -> None:
    acc = StreamAccumulator(chat=True)
    acc.feed(ev({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}, "finish_reason": None}]}), 0.1)
    acc.feed(chunk(" a", finish="length") + usage(2) + DONE, 0.3)
    s = acc.sample(user=0, start=0.0, end=0.3, expected_finish="length", expected_tokens=2)
    assert s.ok and s.ttft == pytest.approx(0.1)
