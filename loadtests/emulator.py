"""An OpenAI-compatible vLLM emulator whose latencies are known, plus fault modes.

It speaks the parts of vLLM's HTTP API a load test touches: ``GET /health``, ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions`` (SSE streaming with
``stream_options.include_usage``, or one JSON body), ``GET /metrics`` with vLLM's metric names.
It records its own per-request TTFT and end-to-end latency, measured where the bytes are written,
at ``GET /emulator/stats`` (``POST /emulator/reset`` clears them), so a test can compare what a
client measured with what the server did.

Latency model (continuous batching, simplified): a request waits in a FIFO queue while
``maxNumSeqs`` sequences are running; once admitted its first token comes after
``ttft(running, promptTokens) = (ttftS + prefillSPer1kTokens * promptTokens/1000
+ ttftSlopeS * max(0, running - knee)) * f`` and every next token after
``itl(running) = (itlS + itlSlopeS * max(0, running - knee)) * f``, where ``running`` is read at
each token (so the delay follows the batch as it changes) and ``f`` is a per-request log-normal
factor ``exp(N(0, jitter))`` that gives latencies a spread. Tokens are whitespace-separated words,
both when counting the prompt and when generating.

The chat role chunk is sent as soon as a request is admitted, as older vLLM servers and proxies
do, so a client that takes the role chunk for the first token reports a TTFT near zero.

It is stdlib asyncio only (no aiohttp here) with one prebuilt byte template per request and no
JSON encoding per token, which keeps 1024 concurrent streams within one core.

Run it: ``python -m loadtests.emulator --port 8000`` or ``servekit emulate``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import select
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from types import TracebackType
from typing import Any, Self

_TEXT = (
    "the model emits tokens at a steady pace while the batch grows and the queue drains "
    "latency stays under budget until the knee where decode slows for every running sequence"
)
VOCAB = tuple(_TEXT.split())

# vLLM's histogram buckets (vllm/v1/metrics/loggers.py), so dashboards and deltas read the same.
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)


@dataclass(frozen=True)
class LatencyModel:
    """The emulator's true latencies (see the module docstring for the formulas)."""

    ttft_s: float = 0.05
    prefill_s_per_1k_tokens: float = 0.0
    itl_s: float = 0.02
    knee: int = 32
    itl_slope_s: float = 0.002
    ttft_slope_s: float = 0.0
    jitter: float = 0.1
    max_num_seqs: int = 256

    def ttft(self, running: int, prompt_tokens: int) -> float:
        over = max(0, running - self.knee)
        return self.ttft_s + self.prefill_s_per_1k_tokens * prompt_tokens / 1000 + self.ttft_slope_s * over

    def itl(self, running: int) -> float:
        return self.itl_s + self.itl_slope_s * max(0, running - self.knee)


@dataclass(frozen=True)
class Faults:
    """Fault modes; rates are per request (``refuse_rate`` per connection) and add up to at most 1."""

    error_rate: float = 0.0  # HTTP 500 with an OpenAI error body, before any stream byte
    stall_rate: float = 0.0  # the stream stops after ``after_tokens`` tokens and never ends
    truncate_rate: float = 0.0  # the HTTP body ends cleanly but without finish_reason, usage or [DONE]
    error_event_rate: float = 0.0  # ``event: error`` with an error object mid-stream, then [DONE]
    wrong_finish_rate: float = 0.0  # ends early with finish_reason "stop" although ignore_eos was sent
    refuse_rate: float = 0.0  # the connection is reset on accept, or instead of answering a request
    slow_start_s: float = 0.0  # for this long after the server starts, requests are slowed ...
    slow_start_factor: float = 5.0  # ... by this factor on TTFT and every token delay
    after_tokens: int = 3  # where mid-stream faults strike
    omit_usage: bool = False  # never send the usage chunk (clients must then count chunks)
    stall_max_s: float = 600.0  # a stalled request gives up after this long (or when the client leaves)

    def pick(self, u: float) -> str | None:
        """The fault for a request whose uniform draw is ``u``."""
        edge = 0.0
        for name in ("error", "stall", "truncate", "error_event", "wrong_finish"):
            edge += getattr(self, f"{name}_rate")
            if u < edge:
                return name
        return None


@dataclass(frozen=True)
class EmulatorConfig:
    model: str = "emulated"
    latency: LatencyModel = field(default_factory=LatencyModel)
    faults: Faults = field(default_factory=Faults)
    seed: int = 0
    max_records: int = 1_000_000

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EmulatorConfig:
        def build(kind: type[Any], raw: dict[str, Any]) -> Any:
            known = {f.name for f in fields(kind)}
            unknown = set(raw) - known
            if unknown:
                raise ValueError(f"unknown {kind.__name__} keys: {sorted(unknown)}")
            return kind(**raw)

        raw = dict(data)
        latency = build(LatencyModel, raw.pop("latency", {}))
        faults = build(Faults, raw.pop("faults", {}))
        return build(cls, {**raw, "latency": latency, "faults": faults})


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.total += 1
        self.sum += v
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1

    def render(self, name: str, labels: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        out += [f'{name}_bucket{{{labels},le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        out += [f'{name}_bucket{{{labels},le="+Inf"}} {self.total}', f"{name}_sum{{{labels}}} {self.sum}",
                f"{name}_count{{{labels}}} {self.total}"]
        return out


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 500: "Internal Server Error"}


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _head(status: int, content_type: str, length: int | None) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", f"content-type: {content_type}"]
    lines.append(f"content-length: {length}" if length is not None else "transfer-encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Emulator:
    """The server state: admission queue, in-flight counts, per-request records, metrics."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.started = time.perf_counter()
        self.running = 0
        self.waiting = 0
        self.slots = asyncio.Semaphore(config.latency.max_num_seqs)
        self.records: deque[dict[str, Any]] = deque(maxlen=config.max_records)
        self.e2e_hist = _Histogram(E2E_BUCKETS)
        self.ttft_hist = _Histogram(TTFT_BUCKETS)
        self.finished: dict[str, int] = {}
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0

    # ----------------------------------------------------------------- HTTP plumbing

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.config.faults.refuse_rate and self.rng.random() < self.config.faults.refuse_rate:
            writer.transport.abort()
            return
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if self.config.faults.refuse_rate and self.rng.random() < self.config.faults.refuse_rate:
                    # Keep-alive clients rarely reconnect, so the reset also strikes requests.
                    writer.transport.abort()
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = b""
                if "transfer-encoding" in headers:
                    await self._send_json(writer, 411, {"error": {"message": "send content-length"}})
                    return
                if "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                arrival = time.perf_counter()
                keep = await self._route(method, target.split("?", 1)[0], headers, body, arrival, reader, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        writer.write(_head(status, "application/json", len(data)) + data)
        await writer.drain()

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes, arrival: float,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False closes the connection."""
        try:
            if path == "/health" and method == "GET":
                writer.write(_head(200, "text/plain", 0))
            elif path == "/v1/models" and method == "GET":
                await self._send_json(writer, 200, {"object": "list", "data": [
                    {"id": self.config.model, "object": "model", "owned_by": "servekit-emulator",
                     "max_model_len": 32768}]})
            elif path == "/metrics" and method == "GET":
                data = self.metrics_text().encode()
                writer.write(_head(200, "text/plain; version=0.0.4", len(data)) + data)
            elif path == "/emulator/stats" and method == "GET":
                await self._send_json(writer, 200, {"records": list(self.records), "running": self.running,
                                                    "waiting": self.waiting,
                                                    "config": self.config.to_json()})
            elif path == "/emulator/reset" and method == "POST":
                self.records.clear()
                await self._send_json(writer, 200, {"ok": True})
            elif path in ("/v1/chat/completions", "/v1/completions"):
                if method != "POST":
                    raise _HttpError(405, "use POST")
                return await self._completion(path.endswith("chat/completions"), headers, body, arrival,
                                              reader, writer)
            else:
                raise _HttpError(404, f"no route {method} {path}")
        except _HttpError as e:
            kind = "InternalServerError" if e.status >= 500 else "BadRequestError"
            await self._send_json(writer, e.status, {"error": {"message": str(e), "type": kind, "code": e.status}})
        return True

    # ----------------------------------------------------------------- completions

    async def _completion(self, chat: bool, headers: dict[str, str], body: bytes, arrival: float,
                          reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            req = json.loads(body)
        except ValueError as e:
            raise _HttpError(400, f"body is not JSON: {e}") from None
        if req.get("model") != self.config.model:
            raise _HttpError(404, f"The model `{req.get('model')}` does not exist.")
        if chat:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in req.get("messages", []))
        else:
            prompt_tokens = len(str(req.get("prompt", "")).split())
        max_tokens = int(req.get("max_tokens") or 16)
        stream = bool(req.get("stream"))
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        lat, faults = self.config.latency, self.config.faults
        fault = faults.pick(self.rng.random())
        factor = math.exp(self.rng.gauss(0.0, lat.jitter)) if lat.jitter > 0 else 1.0
        if faults.slow_start_s and arrival - self.started < faults.slow_start_s:
            factor *= faults.slow_start_factor
        record: dict[str, Any] = {"id": rid, "arrival": arrival, "promptTokens": prompt_tokens,
                                  "status": fault or "ok", "ttftS": None, "e2eS": None, "outputTokens": 0}
        if fault == "error":
            record["e2eS"] = time.perf_counter() - arrival
            self._finish(record, "error")
            raise _HttpError(500, "emulated internal server error")

        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        record["queuedS"] = time.perf_counter() - arrival
        record["runningAtStart"] = self.running
        try:
            if stream:
                return await self._stream(chat, req, rid, max_tokens, prompt_tokens, include_usage, fault,
                                          factor, arrival, record, reader, writer)
            return await self._unary(chat, rid, max_tokens, prompt_tokens, fault, factor, arrival, record,
                                     reader, writer)
        finally:
            self.running -= 1
            self.slots.release()

    async def _wait_until(self, t: float) -> None:
        delay = t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _stall(self, reader: asyncio.StreamReader) -> None:
        # Returns when the client hangs up (EOF), or after stall_max_s.
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(1), self.config.faults.stall_max_s)

    async def _stream(self, chat: bool, req: dict[str, Any], rid: str, max_tokens: int, prompt_tokens: int,
                      include_usage: bool, fault: str | None, factor: float, arrival: float,
                      record: dict[str, Any], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        lat, faults = self.config.latency, self.config.faults
        created = int(time.time())
        model = json.dumps(self.config.model)
        if chat:
            prefix = (f'data: {{"id":"chatcmpl-{rid}","object":"chat.completion.chunk","created":{created},'
                      f'"model":{model},"choices":[{{"index":0,"delta":{{').encode()
            tok_head, tok_tail = prefix + b'"content":"', b'"},"logprobs":null,"finish_reason":'
            end = b"}]}\n\n"
        else:
            prefix = (f'data: {{"id":"cmpl-{rid}","object":"text_completion","created":{created},'
                      f'"model":{model},"choices":[{{"index":0,').encode()
            tok_head, tok_tail = prefix + b'"text":"', b'","logprobs":null,"finish_reason":'
            end = b"}]}\n\n"
        writer.write(_head(200, "text/event-stream", None))
        if chat:
            writer.write(_chunk(prefix + b'"role":"assistant","content":""},"logprobs":null,'
                                         b'"finish_reason":null}]}\n\n'))
        transport = writer.transport
        n = max_tokens
        if fault in ("stall", "truncate", "error_event", "wrong_finish"):
            n = min(max_tokens, faults.after_tokens)
        t_next = arrival + lat.ttft(self.running, prompt_tokens) * factor
        vocab = VOCAB
        for i in range(n):
            await self._wait_until(t_next)
            if transport.is_closing():
                record["status"] = "client_gone"
                self._finish(record, "abort")
                return False
            last = i == n - 1 and fault in (None, "wrong_finish")
            finish = (b'"stop"' if fault == "wrong_finish" else b'"length"') if last else b"null"
            word = vocab[(i + prompt_tokens) % len(vocab)].encode()
            writer.write(_chunk(tok_head + b" " + word + tok_tail + finish + end))
            now = time.perf_counter()
            if i == 0:
                record["ttftS"] = now - arrival
            record["e2eS"] = now - arrival
            record["outputTokens"] = i + 1
            if transport.get_write_buffer_size() > 65536:
                await writer.drain()
            t_next = max(t_next, now) + lat.itl(self.running) * factor
        if fault == "stall":
            await writer.drain()
            await self._stall(reader)
            self._finish(record, "abort")
            return False
        if fault == "truncate":
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self._finish(record, "abort")
            return True
        if fault == "error_event":
            err = b'{"error":{"message":"emulated engine error","type":"InternalServerError","code":500}}'
            writer.write(_chunk(b"event: error\ndata: " + err + b"\n\n") + _chunk(b"data: [DONE]\n\n"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self._finish(record, "abort")
            return True
        tokens = record["outputTokens"]
        if include_usage and not faults.omit_usage:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": tokens,
                     "total_tokens": prompt_tokens + tokens}
            obj: dict[str, Any] = {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                   "created": created, "model": self.config.model, "choices": [], "usage": usage}
            writer.write(_chunk(b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"))
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        self._finish(record, "stop" if fault == "wrong_finish" else "length")
        return True

    async def _unary(self, chat: bool, rid: str, max_tokens: int, prompt_tokens: int, fault: str | None,
                     factor: float, arrival: float, record: dict[str, Any], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool:
        lat = self.config.latency
        n = max_tokens if fault != "wrong_finish" else min(max_tokens, self.config.faults.after_tokens)
        t = arrival + lat.ttft(self.running, prompt_tokens) * factor
        await self._wait_until(t)
        record["ttftS"] = time.perf_counter() - arrival
        for _ in range(n - 1):
            t = max(t, time.perf_counter()) + lat.itl(self.running) * factor
            await self._wait_until(t)
        if fault == "stall":
            await self._stall(reader)
            self._finish(record, "abort")
            return False
        if fault in ("truncate", "error_event"):
            record["e2eS"] = time.perf_counter() - arrival
            self._finish(record, "abort")
            raise _HttpError(500, f"emulated {fault}")
        text = " ".join(VOCAB[(i + prompt_tokens) % len(VOCAB)] for i in range(n))
        reason = "stop" if fault == "wrong_finish" else "length"
        choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": reason} if chat else
                                  {"index": 0, "text": text, "finish_reason": reason})
        body = {"id": rid, "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": self.config.model, "choices": [choice],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}}
        await self._send_json(writer, 200, body)
        record["e2eS"] = time.perf_counter() - arrival
        record["outputTokens"] = n
        self._finish(record, reason)
        return True

    def _finish(self, record: dict[str, Any], reason: str) -> None:
        self.records.append(record)
        self.finished[reason] = self.finished.get(reason, 0) + 1
        self.prompt_tokens_total += record["promptTokens"]
        self.generation_tokens_total += record["outputTokens"]
        if record["status"] == "ok":
            self.e2e_hist.observe(record["e2eS"])
            self.ttft_hist.observe(record["ttftS"])

    def metrics_text(self) -> str:
        labels = f'model_name="{self.config.model}"'
        out = [
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{labels}}} {self.running}",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{labels}}} {self.waiting}",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{labels}}} {self.prompt_tokens_total}",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{labels}}} {self.generation_tokens_total}",
            "# TYPE vllm:request_success_total counter",
        ]
        out += [f'vllm:request_success_total{{{labels},finished_reason="{r}"}} {c}'
                for r, c in sorted(self.finished.items())]
        out += self.e2e_hist.render("vllm:e2e_request_latency_seconds", labels)
        out += self.ttft_hist.render("vllm:time_to_first_token_seconds", labels)
        return "\n".join(out) + "\n"


async def serve(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.Server, int]:
    """Start the emulator on the running loop; returns the server and the bound port."""
    emu = Emulator(config)
    server = await asyncio.start_server(emu.handle, host, port, backlog=4096, limit=1 << 22)
    bound = server.sockets[0].getsockname()[1]
    return server, int(bound)


def run(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted; prints one line with the URL to stdout first."""

    async def main() -> None:
        server, bound = await serve(config, host, port)
        print(f"servekit-emulator listening on http://{host}:{bound}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


class EmulatorProcess:
    """The emulator in a child process on 127.0.0.1 and a free port (for tests and benchmarks).

    A separate process keeps the load generator's and the server's CPU apart, as they would be in a
    real deployment; ``cpu`` pins the child to one core.
    """

    def __init__(self, config: EmulatorConfig, *, cpu: int | None = None, start_timeout_s: float = 20.0) -> None:
        self.config = config
        self.cpu = cpu
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed in __exit__

    def __enter__(self) -> Self:
        cmd = [sys.executable, "-m", "loadtests.emulator", "--host", "127.0.0.1", "--port", "0",
               "--config-json", json.dumps(self.config.to_json())]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL)
        if self.cpu is not None:
            os.sched_setaffinity(self._proc.pid, {self.cpu})
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.start_timeout_s)
        line = self._proc.stdout.readline().decode() if ready else ""
        if "listening on " not in line:
            self.__exit__(None, None, None)
            self._log.seek(0)
            raise RuntimeError(f"emulator did not start: {line!r} {self._log.read()[-2000:].decode(errors='replace')}")
        self.url = line.rsplit(" ", 1)[1].strip()
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as r:
            return json.loads(r.read())

    def records(self) -> list[dict[str, Any]]:
        return list(self.get("/emulator/stats")["records"])

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/emulator/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=30).close()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m loadtests.emulator", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--config-json", default="{}", help="EmulatorConfig as JSON (snake_case keys)")
    a = p.parse_args(argv)
    run(EmulatorConfig.from_json(json.loads(a.config_json)), a.host, a.port)


if __name__ == "__main__":
    main()
