"""Masking and bounding a process's argument vector for a violation line.

Loaded when the first process violation is reported (``processes._Details``), not with the
process sensor: most cold starts never write such a line, and this module's patterns and
code are a quarter of the sensor's size. ``re`` is imported later still, when the patterns
are first compiled.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Iterable

ARGV_LIMIT = 32  # arguments kept in a violation line
ARG_LIMIT = 256  # characters kept per argument
MASK = "***"

_SENSITIVE = (
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key"
    r"|client[-_]?secret|credentials?|auth|session|signature)"
)


class _Patterns:
    """The masking patterns, compiled when the first line with an argv is written.

    Compiling them at import (or importing ``re`` at all) would put ~4 ms into every cold
    start, for lines most invocations never write.
    """

    def __init__(self) -> None:
        import re

        # --password=VALUE, --api-key=VALUE (also inside a shell command string).
        self.option_value = re.compile(rf"(--?[\w-]*{_SENSITIVE}[\w-]*=)(\S+)", re.IGNORECASE)
        # --password VALUE, -p VALUE inside a shell command string.
        self.option_space = re.compile(
            rf"((?:^|\s)(?:--?[\w-]*{_SENSITIVE}[\w-]*|-p)\s+)([^\s-]\S*)", re.IGNORECASE
        )
        # AWS_SECRET_ACCESS_KEY=VALUE, DB_PASSWORD=VALUE (environment assignments).
        self.env_value = re.compile(
            rf"(\b[A-Za-z_][A-Za-z0-9_]*{_SENSITIVE}[A-Za-z0-9_]*=)(\S+)", re.IGNORECASE
        )
        # Authorization: Bearer VALUE / Basic VALUE, in header arguments.
        self.auth_header = re.compile(r"(authorization:\s*(?:\w+\s+)?)(\S+)", re.IGNORECASE)
        # https://user:password@host
        self.url_password = re.compile(r"(://[^/\s:@]+:)([^@\s/]+)(@)")
        # Values that are tokens whatever precedes them: AWS key ids, JWTs, GitHub, Slack.
        self.tokens = re.compile(
            r"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|eyJ[\w-]+\.eyJ[\w-]+\.[\w-]*|gh[pousr]_\w{20,}"
            r"|github_pat_\w{20,}|xox[abposr]-[\w-]{10,})"
        )
        self.secret_flag = re.compile(rf"^(?:--?[\w-]*{_SENSITIVE}[\w-]*|-p)$", re.IGNORECASE)


_compiled: _Patterns | None = None


def _patterns() -> _Patterns:
    global _compiled
    if _compiled is None:
        _compiled = _Patterns()
    return _compiled


def _mask_text(text: str) -> str:
    p = _patterns()
    text = p.option_value.sub(rf"\1{MASK}", text)
    text = p.option_space.sub(rf"\1{MASK}", text)
    text = p.env_value.sub(rf"\1{MASK}", text)
    text = p.auth_header.sub(rf"\1{MASK}", text)
    text = p.url_password.sub(rf"\1{MASK}\3", text)
    return p.tokens.sub(MASK, text)


def mask_argv(argv: Iterable[str]) -> list[str]:
    """The argument vector as a log line may show it: secrets masked, size bounded.

    Masked: the value after a secret-looking option (``--password=x``, ``--token x``,
    ``-p x``), secret-looking environment assignments (``AWS_SECRET_ACCESS_KEY=x``),
    ``Authorization:`` header values, URL passwords, and token-shaped values (AWS key ids,
    JWTs, GitHub and Slack tokens), also inside a shell command string. At most
    ARGV_LIMIT arguments of ARG_LIMIT characters each are kept.
    """
    out: list[str] = []
    mask_next = False
    total = 0
    for arg in argv:
        total += 1
        if len(out) >= ARGV_LIMIT:
            continue
        if mask_next:
            out.append(MASK)
            mask_next = False
            continue
        masked = _mask_text(arg)
        mask_next = bool(_patterns().secret_flag.match(arg))
        if len(masked) > ARG_LIMIT:
            masked = masked[:ARG_LIMIT] + f"...[{len(masked) - ARG_LIMIT} more]"
        out.append(masked)
    if total > ARGV_LIMIT:
        out.append(f"...[{total - ARGV_LIMIT} more arguments]")
    return out
