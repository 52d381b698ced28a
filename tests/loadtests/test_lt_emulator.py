"""The emulator's API shape and its latency model, checked with a plain stdlib HTTP client.

The lower bounds are exact by construction (the emulator never writes a token before its
scheduled time); the upper bounds are loose on purpose, the machine being shared.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from loadtests.emulator import EmulatorConfig, EmulatorProcess, Faults, LatencyModel
from loadtests.servermetrics import delta, gauge, parse


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorProcess]:
    cfg = EmulatorConfig(model="m1", latency=LatencyModel(ttft_s=0.05, itl_s=0.01, jitter=0.0, knee=4))
    with EmulatorProcess(cfg) as e:
        yield e


def _post(url: str, path: str, body: dict[str, object]) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def test_models_health_and_unknown_model(emu: EmulatorProcess) -> None:
    assert emu.get("/v1/models")["data"][0]["id"] == "m1"
    status, body = _post(emu.url, "/v1/chat/completions", {"model": "nope", "messages": []})
    assert status == 404 and "does not exist" in json.loads(body)["error"]["message"]


def test_stream_shape_and_server_timing(emu: EmulatorProcess) -> None:
    emu.reset()
    status, body = _post(emu.url, "/v1/chat/completions", {
        "model": "m1", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 5,
        "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200
    events = [e.removeprefix(b"data: ") for e in body.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    objs = [json.loads(e) for e in events[:-1]]
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [o["choices"][0]["delta"]["content"] for o in objs[1:-1]]
    assert len(contents) == 5 and all(contents)
    assert objs[-2]["choices"][0]["finish_reason"] == "length"
    assert objs[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    (rec,) = emu.records()
    # Alone: TTFT >= 50 ms, then 4 gaps of >= 10 ms.
    assert 0.05 <= rec["ttftS"] < 0.5
    assert 0.05 + 4 * 0.01 <= rec["e2eS"] < 1.0


def test_non_stream_completion(emu: EmulatorProcess) -> None:
    status, body = _post(emu.url, "/v1/completions", {"model": "m1", "prompt": "a b", "max_tokens": 3})
    obj = json.loads(body)
    assert status == 200 and obj["usage"]["completion_tokens"] == 3 and len(obj["choices"][0]["text"].split()) == 3


def test_metrics_use_vllm_names(emu: EmulatorProcess) -> None:
    host, port = emu.url.removeprefix("http://").split(":")
    def scrape() -> str:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return text
    before = parse(scrape())
    _post(emu.url, "/v1/chat/completions", {"model": "m1", "messages": [{"role": "user", "content": "x"}],
                                            "max_tokens": 2, "stream": True})
    after = parse(scrape())
    assert gauge(after, "vllm:num_requests_running", "m1") == 0
    d = delta(before, after, "vllm:e2e_request_latency_seconds", "m1")
    assert d.count == 1 and d.mean_s is not None and 0.06 <= d.mean_s < 1.0


def test_latency_model_formulas() -> None:
    m = LatencyModel(ttft_s=0.1, prefill_s_per_1k_tokens=0.02, itl_s=0.01, knee=8, itl_slope_s=0.002,
                     ttft_slope_s=0.005)
    assert m.itl(8) == pytest.approx(0.01) and m.itl(18) == pytest.approx(0.03)
    assert m.ttft(10, 2000) == pytest.approx(0.1 + 0.04 + 0.01)
    f = Faults(error_rate=0.1, stall_rate=0.2)
    assert [f.pick(u) for u in (0.05, 0.15, 0.29, 0.31)] == ["error", "stall", "stall", None]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown"):
        EmulatorConfig.from_json({"latency": {"ttft": 1}})
