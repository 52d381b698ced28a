"""The Locust user: closed-loop streaming chat (or plain) completions against an OpenAI-compatible server.

Importing this module imports Locust, which monkey-patches the process with gevent; only the
load-generator process (:mod:`loadtests.worker`, :mod:`loadtests.locustfile`) imports it.

Why the body is read by hand: Locust's ``stream=True`` times only the wait for the headers, and
``FastResponse.iter_content`` / geventhttpclient's ``read(n)`` block until ``n`` bytes arrive, so a
small SSE chunk would sit in the buffer until 1 KiB more came. :func:`_read_stream` instead does one
``recv`` at a time on the connection the request went out on, stamps ``perf_counter()`` the moment
it returns, and only then lets geventhttpclient de-chunk the HTTP body and the accumulator parse the
JSON. The request itself still goes through Locust's ``FastHttpSession`` (connection pool,
timeouts, Locust's own statistics and event hooks), with retries off so no failure is hidden.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gevent
from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser, ResponseContextManager
from locust.exception import StopUser

from loadtests.prompts import PromptFactory
from loadtests.stream import CONNECTION, HTTP_ERROR, PROTOCOL, TIMEOUT, Sample, StreamAccumulator, failed


@dataclass
class Control:
    """State the users of one load-generator process share with it."""

    factory: PromptFactory
    sink: Callable[[Sample], None]
    request_timeout_s: float
    failure_backoff_s: float = 0.05
    api_key: str | None = None
    stopping: bool = False
    inflight: dict[str, tuple[int, float]] = field(default_factory=dict)
    next_user: int = 0


class CompletionsUser(FastHttpUser):
    """One closed-loop user: send, read the whole stream, record, repeat (no think time)."""

    abstract = True
    wait_time = constant(0)
    max_retries = 0  # a retried request would hide a failure and restart its clock
    control: ClassVar[Control]

    def __init__(self, environment: Any) -> None:
        # The socket timeout bounds the wait for the headers; _read_stream bounds the whole request.
        type(self).network_timeout = self.control.request_timeout_s
        type(self).connection_timeout = min(10.0, self.control.request_timeout_s)
        super().__init__(environment)
        self.index = self.control.next_user
        self.control.next_user += 1
        self.seq = 0

    @task
    def completion(self) -> None:
        c = self.control
        if c.stopping:
            raise StopUser()
        self.seq += 1
        plan = c.factory.build(self.index, self.seq)
        rid = uuid.uuid4().hex
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream",
                   "Accept-Encoding": "identity", "X-Request-Id": rid}
        if c.api_key:
            headers["Authorization"] = f"Bearer {c.api_key}"
        path = "/v1/chat/completions" if c.factory.chat else "/v1/completions"
        start = time.perf_counter()
        c.inflight[rid] = (self.index, start)
        try:
            sample = self._one(path, plan.body, headers, plan.expected_tokens, start, rid)
        except Exception as e:  # a client-side surprise is still a counted failure, never a lost sample
            sample = failed(self.index, start, time.perf_counter(), PROTOCOL, f"client error: {e!r}", rid)
        finally:
            c.inflight.pop(rid, None)
        c.sink(sample)
        if not sample.ok and c.failure_backoff_s:
            gevent.sleep(c.failure_backoff_s)  # a fast-failing server must not turn into a hot loop

    def _one(self, path: str, body: bytes, headers: dict[str, str], expected_tokens: int, start: float,
             rid: str) -> Sample:
        c = self.control
        deadline = start + c.request_timeout_s
        resp: ResponseContextManager
        # bytes go out as they are (Locust's annotation says str, geventhttpclient takes both).
        with self.client.post(path, data=body, headers=headers, stream=True,  # type: ignore[arg-type]
                              catch_response=True, name=path) as resp:
            t_headers = time.perf_counter()
            status = resp.status_code
            if status != 200:
                err = getattr(resp, "error", None)
                if status == 0:
                    kind = TIMEOUT if isinstance(err, socket.timeout | TimeoutError) else CONNECTION
                    sample = failed(self.index, start, t_headers, kind, repr(err), rid)
                else:
                    text = ""
                    try:
                        text = (resp.content or b"")[:200].decode(errors="replace")
                    except Exception as e:  # the error body itself failed to arrive
                        text = repr(e)
                    sample = failed(self.index, start, time.perf_counter(), HTTP_ERROR, f"HTTP {status}: {text}", rid)
                resp.failure(sample.detail)
                return sample
            sample = _read_stream(resp, chat=c.factory.chat, user=self.index, start=start, t_headers=t_headers,
                                  deadline=deadline, expected_tokens=expected_tokens, rid=rid)
            # This request's times are stamped; before its bookkeeping and the next request's
            # build, let the streams whose bytes are already waiting be read and stamped (when a
            # batch finishes together, that bookkeeping would otherwise delay their stamps).
            gevent.sleep(0)
            resp.request_meta["response_time"] = (sample.e2e if sample.e2e is not None
                                                  else sample.end - start) * 1000.0
            resp.request_meta["response_length"] = sample.output_tokens or 0
            if sample.ok:
                resp.success()
                if sample.ttft is not None:
                    self.environment.events.request.fire(
                        request_type="METRIC", name="ttft", response_time=sample.ttft * 1000.0,
                        response_length=0, exception=None, context={})
            else:
                resp.failure(f"{sample.error}: {sample.detail}")
            return sample


def _read_stream(resp: ResponseContextManager, *, chat: bool, user: int, start: float, t_headers: float,
                 deadline: float, expected_tokens: int, rid: str) -> Sample:
    ghc = resp._response
    acc = StreamAccumulator(chat)
    if ghc is None:
        return failed(user, start, t_headers, CONNECTION, "no response object", rid)
    if ghc._body_buffer:  # body bytes that came with the headers, so at t_headers
        acc.feed(bytes(ghc._body_buffer), t_headers)
        del ghc._body_buffer[:]
    remaining = deadline - time.perf_counter()
    if remaining <= 0 and not ghc.message_complete:
        _discard(ghc)
        return failed(user, start, time.perf_counter(), TIMEOUT, "headers came after the request timeout", rid)
    # One timer for the whole body, not a socket timeout per recv: gevent arms and disarms a timer
    # on every blocking recv that has a timeout, which costs more than parsing the chunk.
    timer = gevent.Timeout(max(remaining, 0.0))
    first_sock = ghc._sock
    pooled_timeout = first_sock.gettimeout() if first_sock is not None else None
    timer.start()
    try:
        if first_sock is not None:
            first_sock.settimeout(None)
        while not ghc.message_complete:
            sock = ghc._sock
            if sock is None:
                break
            try:
                data = sock.recv(65536)
                t = time.perf_counter()  # stamped before any parsing
            except OSError as e:
                _discard(ghc)
                return failed(user, start, time.perf_counter(), CONNECTION, repr(e), rid)
            if not data:
                _discard(ghc)
                break  # closed by the server before the body ended: the accumulator calls it truncated
            try:
                ghc.feed(data)  # HTTP de-chunking; releases the socket to the pool at message end
            except Exception as e:
                _discard(ghc)
                return failed(user, start, t, CONNECTION, f"bad HTTP framing: {e!r}", rid)
            if ghc._body_buffer:
                acc.feed(bytes(ghc._body_buffer), t)
                del ghc._body_buffer[:]
    except gevent.Timeout as e:
        if e is not timer:
            raise
        _discard(ghc)
        return failed(user, start, time.perf_counter(), TIMEOUT,
                      f"no complete response within {deadline - start:.1f}s "
                      f"({acc.content_chunks} content chunks received)", rid)
    finally:
        timer.close()
        if first_sock is not None:
            with contextlib.suppress(OSError):
                first_sock.settimeout(pooled_timeout)  # the pool's next request relies on it
    return acc.sample(user=user, start=start, end=time.perf_counter(), expected_finish="length",
                      expected_tokens=expected_tokens, request_id=rid)


def _discard(ghc: Any) -> None:
    """Close a connection that is mid-response instead of returning it to the pool."""
    sock, pool = ghc._sock, getattr(ghc, "_pool", None)
    ghc._sock = None
    if hasattr(ghc, "_pool"):
        ghc._pool = None
    if sock is not None:
        if pool is not None:
            pool.release_socket(sock)
        else:
            sock.close()
