"""`make demo`: a guarded Lambda-style handler showing violations being blocked and alerted.

Runs with no AWS account: a fake Lambda context, a TCP server on 127.0.0.1 standing in for
an exfiltration endpoint, and the JSON lines lambdaguard writes to standard output, where
Lambda would send them to CloudWatch Logs.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import urllib.request
from dataclasses import dataclass

from lambdaguard import Network, Violation, guard


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


def section(title: str) -> None:
    print(f"\n### {title}", flush=True)


def main() -> None:
    server = start_server()
    port = server.server_address[1]

    # Allowed: the "API" on 127.0.0.1:<port>. Anything else is blocked.
    @guard(network=Network("block", allow=[f"127.0.0.1:{port}"]))
    def handler(event: dict[str, str], context: FakeLambdaContext) -> dict[str, object]:
        results: dict[str, object] = {}
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        results["allowed call"] = body.decode()
        try:
            socket.create_connection(("127.0.0.1", 9), timeout=2)  # not on the allow-list
        except Violation as exc:
            results["blocked connect"] = str(exc)
        try:
            socket.getaddrinfo("exfil.attacker.example", 443)  # never resolved
        except Violation as exc:
            results["blocked lookup"] = str(exc)
        return results

    section("1. A handler with network=Network('block', allow=['127.0.0.1:<port>'])")
    print(handler({}, FakeLambdaContext()), flush=True)

    section("2. Alert mode: the connection goes ahead and is logged")
    with guard(network="alert"), socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        print("alerted connection answered:", sock.recv(64).split(b"\r\n")[0], flush=True)

    server.shutdown()


if __name__ == "__main__":
    main()
