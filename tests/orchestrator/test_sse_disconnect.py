"""Clients of the event stream that go away (closing, resetting, half-closing, mid-backlog or idle) leave a quiet
server log: no "socket.send() raised exception.", no traceback, and the server keeps answering. A real `strato
serve` (uvicorn) and raw sockets, so the disconnects are the kernel's, not a test client's."""

import socket
import struct
import textwrap
import time

import pytest

pytest.importorskip("uvicorn", reason="the REST API needs uvicorn (pip install '.[test]')")

from tests.orchestrator.api_server import WRITE_TOKEN, Server, wait_operation  # noqa: E402

DOC = textwrap.dedent("""\
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        a:
          type: strato.nodes.Noop
          capabilities: {scalable: {properties: {default_instances: 150, max_instances: 400}}}
    """)


def open_stream(port: int, query: str = "last=5000") -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader: the server's writes back up
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /v1/infrastructures/sse/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 f"Authorization: Bearer {WRITE_TOKEN}\r\n\r\n".encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    return sock


def leave(sock: socket.socket, how: str) -> None:
    if how == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    elif how == "half-close":
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.3)
    sock.close()


@pytest.mark.timeout(240)
def test_event_stream_clients_that_disconnect_leave_no_noise_in_the_log(strato_home):
    server = Server(strato_home).start()
    try:
        with server.client() as client:
            op = client.post("/v1/infrastructures", json={"name": "sse", "descriptor": DOC}).json()["operation"]
            assert wait_operation(client, op, 120)["state"] == "succeeded"
            for how in ("close", "reset", "half-close"):
                for query in ("last=5000", "last=0"):  # mid-backlog, and idle waiting for news
                    for _ in range(3):
                        leave(open_stream(server.port, query), how)
            # new events while the departed streams would have been writing
            scaled = client.post("/v1/infrastructures/sse/nodes/a/scale", json={"to": 160})
            assert scaled.status_code == 202, scaled.text
            assert wait_operation(client, scaled.json()["operation"], 120)["state"] == "succeeded"
            time.sleep(2)
            assert client.get("/healthz").status_code == 200
    finally:
        server.stop()
    with open(server.log.name, encoding="utf-8", errors="replace") as fh:
        log = fh.read()
    assert "socket.send() raised exception" not in log, log[-2000:]
    assert "Traceback" not in log and "ERROR" not in log, log[-2000:]
    assert log.count("/events?") == 18
