"""boto3 against moto's server mode on 127.0.0.1, through a counting proxy.

botocore wraps unexpected exceptions in HTTPClientError, which its "standard" retry mode
retries; lambdaguard unwraps the Violation (sensors/network.py), so a blocked AWS call is
one attempt and one line in both retry modes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer
from netkit import TCPForwarder, violations

from lambdaguard import Network, NetworkViolation, guard

MAX_ATTEMPTS = 5


@pytest.fixture(scope="module")
def moto_server() -> Iterator[tuple[str, int]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield host, port
    server.stop()


@pytest.fixture
def proxy(moto_server: tuple[str, int]) -> Iterator[TCPForwarder]:
    forwarder = TCPForwarder(moto_server)
    yield forwarder
    forwarder.close()


def s3_client(port: int, mode: str) -> Any:
    return boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://127.0.0.1:{port}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": mode, "max_attempts": MAX_ATTEMPTS}),
    )


@pytest.mark.parametrize("retry_mode", ["legacy", "standard"])
class TestBoto3:
    def test_allow_listed_aws_call_works(
        self, retry_mode: str, proxy: TCPForwarder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An S3 call to an allow-listed endpoint reaches moto and succeeds, unreported."""
        client = s3_client(proxy.port, retry_mode)
        with guard(network=Network("block", allow=[f"127.0.0.1:{proxy.port}"])):
            client.create_bucket(Bucket="allowed-bucket")
            names = [b["Name"] for b in client.list_buckets()["Buckets"]]
        assert "allowed-bucket" in names
        proxy.settle()
        assert proxy.attempts >= 1
        assert violations(capsys.readouterr().out) == []

    def test_blocked_aws_call_is_one_attempt_and_one_line(
        self, retry_mode: str, proxy: TCPForwarder, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A blocked S3 call fails with the Violation itself, not retried, one line."""
        client = s3_client(proxy.port, retry_mode)
        with guard(network="block"), pytest.raises(NetworkViolation) as info:
            client.list_buckets()
        proxy.settle()
        assert proxy.attempts == 0
        assert info.value.target == f"127.0.0.1:{proxy.port}"
        lines = violations(capsys.readouterr().out)
        assert [(v["action"], v["target"]) for v in lines] == [
            ("connect", f"127.0.0.1:{proxy.port}")
        ]
