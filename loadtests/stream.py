"""Per-request measurement: turn the bytes of one OpenAI streaming response into a :class:`Sample`.

Pure Python and clock-agnostic, so it is tested without a network: the caller feeds each block of
body bytes together with the monotonic time at which the block came off the socket (stamped before
any parsing), and this module decides what those times mean.

Definitions (all from the client's send time ``start``):

- TTFT: the receive time of the first chunk whose content delta is non-empty (chat
  ``delta.content`` or a reasoning delta; completions ``text``). A role-only chunk, an empty
  content chunk and the usage chunk are not tokens.
- E2E: the receive time of the last chunk that carried content. The usage chunk and ``[DONE]``
  come later and are excluded (they would add a round of server work to every request); the time
  the stream closed is kept separately as ``close``.
- TPOT: ``(e2e - ttft) / (outputTokens - 1)``, the first token excluded; None for one token.
- Output tokens: the server's ``usage.completion_tokens``; when the server sends no usage, the
  number of content chunks, flagged by ``tokens_from_usage = False``.

Failures are never dropped: an HTTP error, a timeout, a closed connection before the end, an
``event: error`` or an ``error`` object, a missing ``finish_reason``/``[DONE]`` (truncated), a
finish reason other than the expected one, or fewer tokens than ``max_tokens`` with ``ignore_eos``
each give a failed sample with a kind and a detail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

# raw_decode on str skips json.loads' per-call encoding sniffing and trailing-whitespace scan:
# a few microseconds per chunk, which is most of the client's parsing budget at 256 streams.
_raw_decode = json.JSONDecoder().raw_decode

# Failure kinds, stable strings (they appear in reports and in the worker protocol).
HTTP_ERROR = "http_error"
CONNECTION = "connection_error"
TIMEOUT = "timeout"
TRUNCATED = "truncated"
ERROR_EVENT = "error_event"
FINISH_REASON = "unexpected_finish_reason"
TOKEN_MISMATCH = "token_count_mismatch"
PROTOCOL = "protocol_error"
INFLIGHT = "in_flight_at_stop"

# Failures whose latency is known to exceed the time waited: they enter the latency percentiles as
# +inf rather than being left out (leaving them out would flatter p95 exactly when it matters).
CENSORED = frozenset({TIMEOUT, INFLIGHT})


@dataclass(slots=True)
class Sample:
    """One request, as the client saw it. Times are ``time.perf_counter()`` seconds."""

    user: int
    start: float
    end: float  # when the client was done with the request (closed, failed or gave up)
    ok: bool
    error: str | None = None
    detail: str = ""
    ttft: float | None = None
    e2e: float | None = None
    close: float | None = None
    tpot: float | None = None
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    tokens_from_usage: bool = False
    request_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _SAMPLE_FIELDS}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Sample:
        return cls(**d)


_SAMPLE_FIELDS = tuple(f.name for f in fields(Sample))


class StreamAccumulator:
    """Incremental SSE reader for one chat or completions stream."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self._buf = b""
        self.first_content: float | None = None
        self.last_content: float | None = None
        self.content_chunks = 0
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.done = False
        self.error: str | None = None
        self.protocol_error: str | None = None

    def feed(self, data: bytes, t: float) -> None:
        """Body bytes that arrived at time ``t``; every event completed by them is stamped ``t``."""
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        *events, self._buf = buf.split(b"\n\n")
        for ev in events:
            if ev:
                self._event(ev, t)

    def _event(self, raw: bytes, t: float) -> None:
        if raw.startswith(b"data: ") and b"\n" not in raw:
            payload = raw[6:]  # the usual one-line event
        else:
            kind = b"message"
            data_lines = []
            for line in raw.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    kind = line[6:].strip()
                # ':' comments, id: and retry: carry no measurement
            if kind == b"error":
                self.error = self.error or b"\n".join(data_lines).decode(errors="replace")[:300] or "event: error"
                return
            if not data_lines:
                return
            payload = b"\n".join(data_lines)
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            obj, end = _raw_decode(payload.decode())
            if payload[end:].strip():
                raise ValueError("trailing data")
        except (ValueError, UnicodeDecodeError):
            self.protocol_error = self.protocol_error or f"chunk is not JSON: {payload[:80]!r}"
            return
        if not isinstance(obj, dict):
            self.protocol_error = self.protocol_error or "chunk is not a JSON object"
            return
        if obj.get("error"):
            self.error = self.error or json.dumps(obj["error"])[:300]
            return
        if obj.get("usage"):
            self.usage = obj["usage"]
        for choice in obj.get("choices") or ():
            if self.chat:
                delta = choice.get("delta") or {}
                text = delta.get("content") or delta.get("reasoning_content") or delta.get("reasoning")
            else:
                text = choice.get("text")
            if text:
                if self.first_content is None:
                    self.first_content = t
                self.last_content = t
                self.content_chunks += 1
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def sample(self, *, user: int, start: float, end: float, expected_finish: str | None,
               expected_tokens: int | None, request_id: str = "") -> Sample:
        """The sample for a stream that ended (the connection finished the body) at ``end``."""
        s = Sample(user=user, start=start, end=end, ok=False, close=end - start, request_id=request_id)
        if self.first_content is not None and self.last_content is not None:
            s.ttft = self.first_content - start
            s.e2e = self.last_content - start
        usage_tokens = (self.usage or {}).get("completion_tokens")
        if isinstance(usage_tokens, int):
            s.output_tokens, s.tokens_from_usage = usage_tokens, True
        else:
            s.output_tokens = self.content_chunks
        prompt = (self.usage or {}).get("prompt_tokens")
        s.prompt_tokens = prompt if isinstance(prompt, int) else None
        if s.ttft is not None and s.e2e is not None and s.output_tokens and s.output_tokens > 1:
            s.tpot = (s.e2e - s.ttft) / (s.output_tokens - 1)

        if self.error is not None:
            s.error, s.detail = ERROR_EVENT, self.error
        elif self.protocol_error is not None:
            s.error, s.detail = PROTOCOL, self.protocol_error
        elif self.finish_reason is None or not self.done:
            missing = [w for w, ok in (("finish_reason", self.finish_reason), ("[DONE]", self.done)) if not ok]
            s.error, s.detail = TRUNCATED, f"stream ended without {' and '.join(missing)}"
        elif s.ttft is None:
            s.error, s.detail = PROTOCOL, "no content tokens in the stream"
        elif expected_finish is not None and self.finish_reason != expected_finish:
            s.error, s.detail = FINISH_REASON, f"finish_reason {self.finish_reason!r}, expected {expected_finish!r}"
        elif expected_tokens is not None and s.output_tokens != expected_tokens:
            s.error, s.detail = TOKEN_MISMATCH, f"{s.output_tokens} output tokens, expected {expected_tokens}"
        else:
            s.ok = True
        return s


def failed(user: int, start: float, end: float, kind: str, detail: str, request_id: str = "") -> Sample:
    """A sample for a request that failed before or while streaming."""
    return Sample(user=user, start=start, end=end, ok=False, error=kind, detail=detail[:300],
                  close=end - start, request_id=request_id)
