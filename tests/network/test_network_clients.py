"""Real HTTP and asyncio clients against a real loopback server, under the network policy.

For every client, a blocked request makes exactly one attempt (one violation line, none
reaching the server) and fails with a lambdaguard.Violation, even where the client is
configured to retry connection errors; an allow-listed request works.
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import requests
import urllib3
from netkit import HTTPServer, UDPReceiver, violations
from requests.adapters import HTTPAdapter

from lambdaguard import Network, NetworkViolation, Violation, guard

RETRIES = 5  # every client below is told to retry connection errors this many times


def get_urllib(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


def get_http_client(url: str) -> bytes:
    host, port = url.split("/")[2].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read()
    finally:
        conn.close()


def get_requests(url: str) -> bytes:
    with requests.Session() as session:
        session.trust_env = False
        retry = urllib3.Retry(total=RETRIES, connect=RETRIES, backoff_factor=0)
        session.mount("http://", HTTPAdapter(max_retries=retry))
        return session.get(url, timeout=10).content


def get_urllib3(url: str) -> bytes:
    retry = urllib3.Retry(total=RETRIES, connect=RETRIES, backoff_factor=0)
    with urllib3.PoolManager(retries=retry) as pool:
        return pool.request("GET", url, timeout=10).data


def get_httpx(url: str) -> bytes:
    transport = httpx.HTTPTransport(retries=RETRIES)
    with httpx.Client(transport=transport, trust_env=False, timeout=10) as client:
        return client.get(url).content


def get_httpx_async(url: str) -> bytes:
    async def fetch() -> bytes:
        transport = httpx.AsyncHTTPTransport(retries=RETRIES)
        async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=10) as client:
            return (await client.get(url)).content

    return asyncio.run(fetch())


def get_asyncio_streams(url: str, **options: Any) -> bytes:
    host, port = url.split("/")[2].split(":")

    async def fetch() -> bytes:
        reader, writer = await asyncio.open_connection(host, int(port), **options)
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data.split(b"\r\n\r\n", 1)[1]

    return asyncio.run(fetch())


CLIENTS: dict[str, Callable[[str], bytes]] = {
    "urllib": get_urllib,
    "http.client": get_http_client,
    "requests": get_requests,
    "urllib3": get_urllib3,
    "httpx": get_httpx,
    "httpx-async": get_httpx_async,
    "asyncio-streams": get_asyncio_streams,
    # Happy Eyeballs (as aiohttp turns it on) runs attempts through asyncio.staggered
    "asyncio-happy-eyeballs": lambda url: get_asyncio_streams(url, happy_eyeballs_delay=0.25),
}


@pytest.mark.parametrize("client", CLIENTS)
class TestHTTPClients:
    def test_blocked_request_is_one_attempt_and_one_line(
        self, client: str, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A blocked request fails with a Violation after one attempt, none reaching the server."""
        with guard(network="block"), pytest.raises(Violation) as info:
            CLIENTS[client](http.url)
        http.settle()
        assert http.attempts == 0
        assert isinstance(info.value, NetworkViolation)
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [
            ("connect", f"127.0.0.1:{http.port}")
        ]

    def test_blocked_request_by_name_is_stopped_at_the_lookup(
        self, client: str, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With a host name, the lookup is the one blocked attempt."""
        with guard(network="block"), pytest.raises(NetworkViolation):
            CLIENTS[client](f"http://localhost:{http.port}/")
        http.settle()
        assert http.attempts == 0
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [
            ("resolve", f"localhost:{http.port}")
        ]

    def test_allow_listed_request_works(
        self, client: str, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An allow-listed host:port is reached and nothing is reported."""
        with guard(network=Network("block", allow=[f"localhost:{http.port}"])):
            assert CLIENTS[client](f"http://localhost:{http.port}/") == b"ok"
        http.settle()
        assert http.attempts == 1
        assert violations(capsys.readouterr().out) == []

    def test_alerted_request_works_and_is_logged_once(
        self, client: str, http: HTTPServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Under alert the request goes ahead and its connect is one alert line."""
        with guard(network="alert"):
            assert CLIENTS[client](http.url) == b"ok"
        lines = violations(capsys.readouterr().out)
        assert [(v["mode"], v["action"]) for v in lines] == [("alert", "connect")]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lost: Exception | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        if not self.closed.done():
            self.closed.set_result(None)


class TestAsyncioDatagrams:
    def test_datagram_endpoint_to_a_blocked_remote_is_refused(
        self, udp: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """create_datagram_endpoint(remote_addr=...) fails at its connect with a Violation."""

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            await loop.create_datagram_endpoint(_Datagrams, remote_addr=udp.address)

        with guard(network="block"), pytest.raises(NetworkViolation):
            asyncio.run(scenario())
        udp.settle()
        assert udp.received == 0
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [("connect", f"127.0.0.1:{udp.port}")]

    def test_transport_sendto_a_blocked_address_sends_nothing(
        self, udp: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """transport.sendto(data, addr) is blocked; the Violation reaches connection_lost."""
        seen: dict[str, Any] = {}

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(lambda _loop, context: seen.setdefault("context", context))
            transport, protocol = await loop.create_datagram_endpoint(
                _Datagrams, local_addr=None, family=2
            )
            transport.sendto(b"secret", udp.address)
            await protocol.closed
            seen["lost"] = protocol.lost

        with guard(network="block"):
            asyncio.run(scenario())
        udp.settle()
        assert udp.received == 0
        assert isinstance(seen["lost"], NetworkViolation)
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [("sendto", f"127.0.0.1:{udp.port}")]

    def test_allow_listed_datagram_endpoint_sends(
        self, udp: UDPReceiver, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A datagram endpoint to an allow-listed address works."""

        async def scenario() -> None:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_datagram_endpoint(_Datagrams, remote_addr=udp.address)
            transport.sendto(b"hello")
            transport.close()

        with guard(network=Network("block", allow=[f"127.0.0.1:{udp.port}"])):
            asyncio.run(scenario())
        udp.settle()
        assert udp.payloads == [b"hello"]
        assert violations(capsys.readouterr().out) == []
