"""A run connecting to a vLLM server waits until others' requests are done (VllmServer.load, wait_idle): vLLM's
seeded samples depend on what shares a step. Against a loopback server that answers /metrics as vLLM does."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler

from curate.vllm_server import VllmServer

from .loopback import LoopbackServer

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="m"}} {running}
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}
vllm:num_requests_waiting_by_reason{{reason="capacity"}} 7.0
"""


class _Handler(BaseHTTPRequestHandler):
    metrics: "Metrics"

    def do_GET(self):  # noqa: N802
        m = self.metrics
        if self.path != "/metrics" or m.missing:
            self.send_error(404)
            return
        body = METRICS.format(running=m.running(), waiting=m.waiting).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Metrics(LoopbackServer):
    handler_base, state_name = _Handler, "metrics"

    def __init__(self, running: float = 0.0, waiting: float = 0.0, busy_for: float = 0.0, missing: bool = False):
        self.busy, self.waiting, self.missing = running, waiting, missing
        self.until = time.monotonic() + busy_for

    def running(self) -> float:
        return self.busy if time.monotonic() < self.until else 0.0


def _server(m: Metrics) -> VllmServer:
    return VllmServer(m.address + "/v1", [])


def test_load_counts_running_and_waiting_requests_only():
    with Metrics(running=2.0, waiting=1.0, busy_for=60) as m:
        assert _server(m).load() == 3  # not the *_by_reason series
    with Metrics(missing=True) as m:
        assert _server(m).load() is None  # a server without metrics: nothing curate can see


def test_wait_idle_waits_for_a_stopped_runs_last_batch_and_says_why():
    said = []
    with Metrics(running=1.0, busy_for=1.5) as m:
        t0 = time.monotonic()
        assert _server(m).wait_idle(timeout=30, status=said.append)
        assert 1.0 < time.monotonic() - t0 < 10
    assert len(said) == 1 and "busy with 1 request" in said[0]


def test_wait_idle_gives_up_on_a_server_that_stays_busy():
    with Metrics(running=4.0, busy_for=600) as m:
        assert not _server(m).wait_idle(timeout=1.0)
    with Metrics() as m:
        assert _server(m).wait_idle(timeout=0.0)
