"""What the violation line shows of an argument vector: secrets masked, size bounded."""

from __future__ import annotations

import pytest

from lambdaguard.sensors._masking import ARG_LIMIT, ARGV_LIMIT, mask_argv


class TestMasking:
    @pytest.mark.parametrize(
        ("argv", "shown"),
        [
            (["mysql", "--password=s3cr3t"], ["mysql", "--password=***"]),
            (["tool", "--api-key", "abc123"], ["tool", "--api-key", "***"]),
            (["mysql", "-u", "root", "-p", "s3cr3t"], ["mysql", "-u", "root", "-p", "***"]),
            (["env", "AWS_SECRET_ACCESS_KEY=abc/def"], ["env", "AWS_SECRET_ACCESS_KEY=***"]),
            (["env", "GITHUB_TOKEN=xyz"], ["env", "GITHUB_TOKEN=***"]),
            (
                ["curl", "-H", "Authorization: Bearer abc.def"],
                ["curl", "-H", "Authorization: Bearer ***"],
            ),
            (
                ["git", "clone", "https://me:pw@example.com/r"],
                ["git", "clone", "https://me:***@example.com/r"],
            ),
            (["aws", "AKIAABCDEFGHIJKLMNOP"], ["aws", "***"]),
            (["x", "ghp_" + "a" * 36], ["x", "***"]),
            (["x", "eyJhbGciOi.eyJzdWIiOi.c2ln"], ["x", "***"]),
        ],
    )
    def test_secret_looking_values_are_masked(self, argv: list[str], shown: list[str]) -> None:
        """Values of secret-looking options, assignments, headers, URLs and tokens are masked."""
        assert mask_argv(argv) == shown

    def test_secrets_inside_a_shell_command_are_masked(self) -> None:
        """A shell command string is masked inside, not only argument by argument."""
        command = "curl -u x --password hunter2 -H 'Authorization: token abc' DB_PASSWORD=pw"
        shown = mask_argv(["/bin/sh", "-c", command])[2]
        assert "hunter2" not in shown
        assert "abc" not in shown
        assert "pw" not in shown.replace("PASSWORD", "")
        assert shown.startswith("curl -u x --password ***")

    def test_ordinary_arguments_are_kept(self) -> None:
        """Arguments that do not look secret are shown as they are."""
        argv = ["ffmpeg", "-i", "/tmp/in.mp4", "-vf", "scale=640:-1", "out.mp4"]
        assert mask_argv(argv) == argv


class TestBounds:
    def test_long_argument_vectors_are_cut(self) -> None:
        """At most ARGV_LIMIT arguments are kept, and the rest are counted."""
        shown = mask_argv([str(i) for i in range(ARGV_LIMIT + 10)])
        assert len(shown) == ARGV_LIMIT + 1
        assert shown[-1] == "...[10 more arguments]"

    def test_long_arguments_are_cut(self) -> None:
        """Each argument keeps at most ARG_LIMIT characters, and says how many were cut."""
        shown = mask_argv(["x" * (ARG_LIMIT + 5)])
        assert shown == ["x" * ARG_LIMIT + "...[5 more]"]
