"""Fixtures more than one test module needs: servers the tests start themselves on 127.0.0.1."""

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from moto.server import ThreadedMotoServer
from pulumi.runtime.proto import analyzer_pb2_grpc

PACK_DIR = Path(__file__).resolve().parents[1] / "policies"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto in server mode on 127.0.0.1 (boto3 reaches it over HTTP through AWS_ENDPOINT_URL)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """``python policies``, as the Pulumi CLI starts a Python pack: it prints its port and serves gRPC."""
    proc = subprocess.Popen([sys.executable, "-u", str(PACK_DIR)], cwd=PACK_DIR.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    channel: grpc.Channel | None = None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=60):
                raise AssertionError("the policy pack did not print its port within 60 s")
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            proc.kill()
            raise AssertionError(f"expected a port, got {line!r}; stderr: {proc.stderr.read()}")
        channel = grpc.insecure_channel(f"127.0.0.1:{line}")
        grpc.channel_ready_future(channel).result(timeout=30)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        if channel is not None:
            channel.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
