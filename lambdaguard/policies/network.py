"""The ``network`` policy: what a network target is, allow-list entries, and matching.

Allow-list entries (docs/network.md has the full table)::

    api.example.com          a host name (any port)
    api.example.com:443      a host name on one port
    *.amazonaws.com          a host glob (``*`` matches any characters, dots too)
    203.0.113.7  / :443      an IPv4 address, optionally with a port
    ::1  /  [::1]:8080       an IPv6 address; brackets when a port follows
    10.0.0.0/8  / :443       a CIDR block, optionally with a port ([2001:db8::/32]:443 for IPv6)
    unix:/run/app/*.sock     an AF_UNIX socket path glob (absolute; paths are normalised)
    unix:@name               a Linux abstract-namespace socket

An allowed host name also allows the addresses its resolution returned: when a lookup of
an allowed name goes ahead, its answers are remembered (see :func:`remember_resolution`) so
that the connect that follows, which only knows the IP, is matched back to the name.

Lambda's own plumbing (Runtime API, extensions API, X-Ray daemon) is always permitted; the
addresses are read from the environment when the rule is built, so that changing
``os.environ`` later can neither loosen nor break a policy in force.
"""

from __future__ import annotations

import os
import posixpath
import threading

from lambdaguard.errors import ConfigError
from lambdaguard.policy import Event, Rule, register

# ipaddress is imported where an address is parsed, not here: ~1.5 ms of cold start that a
# handler whose rules and lookups hold only names never needs.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    import ipaddress
    from collections.abc import Iterable, Mapping

    IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
    IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Actions whose target is a name lookup: the port, if any, is not part of the decision,
# because a lookup reveals the name, not the port.
LOOKUP_ACTIONS = frozenset({"resolve", "reverse-resolve"})

ACCEPTED_ENTRIES = (
    "accepted: host, host:port, *.glob, *.glob:port, IPv4, IPv4:port, IPv6, [IPv6]:port, "
    "CIDR, CIDR:port, [IPv6-CIDR]:port, unix:/path/glob, unix:@abstract-name"
)


class NetworkTarget:
    """Where a network operation goes: an IP or host name and a port, or a unix path.

    Plain slotted classes here and below, not dataclasses: importing dataclasses costs
    about 10 ms of cold start (it imports inspect).
    """

    __slots__ = ("family", "host", "port")

    def __init__(self, family: str, host: str | None, port: int | None = None) -> None:
        self.family = family  # "inet", "inet6", "unix", "name", "ip" or another AF_* name
        self.host = host  # IP address text, host name, or unix path
        self.port = port

    def __repr__(self) -> str:
        return f"NetworkTarget({self.family!r}, {self.host!r}, {self.port!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NetworkTarget):
            return NotImplemented
        return (self.family, self.host, self.port) == (other.family, other.host, other.port)

    def __hash__(self) -> int:
        return hash((self.family, self.host, self.port))

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.host}"
        host = self.host if self.host is not None else "*"
        if self.port is None:
            return host
        if ":" in host:
            return f"[{host}]:{self.port}"
        return f"{host}:{self.port}"

    @property
    def ip(self) -> IPAddress | None:
        return parse_ip(self.host) if self.host is not None and self.family != "unix" else None


_IP_CACHE_LIMIT = 4096
_ip_cache: dict[str, IPAddress | None] = {}


def parse_ip(text: str) -> IPAddress | None:
    """An IP address, with IPv6 scope ids dropped and IPv4-mapped IPv6 unwrapped; else None.

    Cached: ipaddress parses in pure Python (about 10 µs for an IPv4 address), and the same
    few addresses are judged again and again. Only exact ``str`` keys are cached.
    """
    try:
        return _ip_cache[text]
    except KeyError:
        pass
    except TypeError:  # unhashable: never cached
        return _parse_ip(text)
    ip = _parse_ip(text)
    if type(text) is str:
        if len(_ip_cache) >= _IP_CACHE_LIMIT:
            _ip_cache.clear()
        _ip_cache[text] = ip
    return ip


def _parse_ip(text: str) -> IPAddress | None:
    if "%" in text:
        text = text.split("%", 1)[0]
    if ":" not in text and not (text.isascii() and text.replace(".", "").isdigit()):
        # Neither IPv6 (colons) nor IPv4 (ASCII digits and dots): a name, which
        # ipaddress would refuse too; so a name never costs the import.
        return None
    import ipaddress

    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


# --- resolutions of allowed names -------------------------------------------------------

_RESOLVED_LIMIT = 4096
# A plain dict keeps insertion order: popping and re-inserting moves an IP to the end, and
# the oldest is the first key (not OrderedDict: collections is ~2 ms of a 3.13 cold start).
_resolved: dict[IPAddress, frozenset[str]] = {}
_resolved_lock = threading.Lock()
# (name, address text) pairs already recorded: a repeat lookup costs one set probe each.
_seen: set[tuple[str, str]] = set()


def remember_resolution(name: str, addresses: Iterable[str]) -> None:
    """Record that ``name`` resolved to ``addresses`` (bounded; oldest forgotten first)."""
    # _seen is keyed by the name as looked up, before normalising: a repeat lookup, the
    # usual case, then costs one set probe per answer and nothing else.
    fresh = [text for text in addresses if (name, text) not in _seen]
    if not fresh:
        return  # the same name resolved to the same addresses as before
    normal = normalise_name(name)
    new = [ip for ip in map(parse_ip, fresh) if ip is not None and normal not in names_for(ip)]
    if len(_seen) >= _RESOLVED_LIMIT:
        _seen.clear()
    _seen.update((name, text) for text in fresh)
    with _resolved_lock:
        for ip in new:
            names = _resolved.pop(ip, frozenset())
            _resolved[ip] = names | {normal}
        while len(_resolved) > _RESOLVED_LIMIT:
            del _resolved[next(iter(_resolved))]


def resolution_known(name: str, text: object) -> bool:
    """Whether ``name`` (as looked up) was already recorded as resolving to ``text``."""
    return (name, text) in _seen


def names_for(ip: IPAddress) -> frozenset[str]:
    return _resolved.get(ip, frozenset())


def forget_resolutions() -> None:
    """Forget every remembered resolution (tests start from a clean slate with it)."""
    with _resolved_lock:
        _resolved.clear()
        _seen.clear()


# --- allow-list entries -----------------------------------------------------------------


class _Entry:
    """One parsed allow-list entry. Picklable: rules travel into process-pool workers."""

    __slots__ = ("kind", "port", "value")

    def __init__(self, kind: str, value: str | IPAddress | IPNetwork, port: int | None) -> None:
        self.kind = kind  # "name", "glob", "ip", "net", "unix"
        self.value = value
        self.port = port

    def __repr__(self) -> str:
        return f"_Entry({self.kind!r}, {self.value!r}, {self.port!r})"

    def port_ok(self, port: int | None, action: str) -> bool:
        return self.port is None or action in LOOKUP_ACTIONS or port == self.port

    def matches_name(self, name: str, port: int | None, action: str) -> bool:
        if not self.port_ok(port, action):
            return False
        if self.kind == "name":
            return name == self.value
        if self.kind == "glob":
            assert isinstance(self.value, str)
            import fnmatch  # here, not at import: fnmatch brings re (~3 ms of cold start)

            return fnmatch.fnmatchcase(name, self.value)
        return False

    def matches_ip(self, ip: IPAddress, port: int | None, action: str) -> bool:
        if not self.port_ok(port, action):
            return False
        if self.kind == "ip":
            return ip == self.value
        if self.kind == "net":
            network = self.value
            if TYPE_CHECKING:  # a "net" entry holds a network (parse_entry)
                assert isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
            return ip.version == network.version and ip in network
        return False


def _parse_port(text: str, entry: str, source: str) -> int:
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    raise ConfigError(
        f"{source}: allow-list entry {entry!r} has port {text!r}; a port is a whole number "
        f"from 1 to 65535; {ACCEPTED_ENTRIES}."
    )


def parse_entry(entry: str, *, source: str) -> _Entry:
    """Parse one allow-list entry; ConfigError names the entry and the accepted forms."""
    if entry.startswith("unix:"):
        path = entry[len("unix:") :]
        if path.startswith("@") and len(path) > 1:
            return _Entry("unix", path, None)  # a Linux abstract-namespace name
        if not path.startswith("/"):
            raise ConfigError(
                f"{source}: allow-list entry {entry!r} is not an absolute socket path; "
                f"unix: takes /an/absolute/path/glob or @abstract-name; {ACCEPTED_ENTRIES}."
            )
        # Targets are normalised (sensors.network.unix_path); entries are too, to match.
        return _Entry("unix", posixpath.normpath(path), None)

    if "://" in entry:
        raise ConfigError(
            f"{source}: allow-list entry {entry!r} is a URL; give the host and optional port "
            f"only (api.example.com:443); {ACCEPTED_ENTRIES}."
        )
    port: int | None = None
    if entry.startswith("["):
        close = entry.find("]")
        rest = entry[close + 1 :]
        if close < 0 or (rest and not rest.startswith(":")):
            raise ConfigError(
                f"{source}: allow-list entry {entry!r} is malformed; {ACCEPTED_ENTRIES}."
            )
        host = entry[1:close]
        if ":" not in host:
            raise ConfigError(
                f"{source}: allow-list entry {entry!r} has brackets around {host!r}; brackets "
                f"hold an IPv6 address or block; {ACCEPTED_ENTRIES}."
            )
        if entry[close + 1 :]:
            port = _parse_port(entry[close + 2 :], entry, source)
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
        port = _parse_port(port_text, entry, source)
    else:
        host = entry  # a bare IPv6 address or block has several colons and no port

    if "/" in host:
        import ipaddress

        try:
            return _Entry("net", ipaddress.ip_network(host, strict=False), port)
        except ValueError:
            raise ConfigError(
                f"{source}: allow-list entry {entry!r} is not a valid CIDR block; "
                f"{ACCEPTED_ENTRIES}."
            ) from None
    ip = parse_ip(host)
    if ip is not None:
        return _Entry("ip", ip, port)
    if ":" in host:
        raise ConfigError(
            f"{source}: allow-list entry {entry!r} is not a valid IPv6 address; {ACCEPTED_ENTRIES}."
        )
    name = normalise_name(host)
    if name and set(name) <= set("0123456789."):
        # Digits and dots only: a mistyped IPv4 address, which must not quietly become a name.
        raise ConfigError(
            f"{source}: allow-list entry {entry!r} is not a valid IPv4 address; {ACCEPTED_ENTRIES}."
        )
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-._*")
    if not name or not set(name) <= allowed:
        raise ConfigError(
            f"{source}: allow-list entry {entry!r} is not a host name, address or block; "
            f"{ACCEPTED_ENTRIES}."
        )
    return _Entry("glob" if "*" in name else "name", name, port)


# --- Lambda's own plumbing ----------------------------------------------------------------


def plumbing_entries(environ: Mapping[str, str]) -> tuple[_Entry, ...]:
    """Entries for the Runtime/extensions API and the X-Ray daemon, read from ``environ``.

    AWS_LAMBDA_RUNTIME_API is ``host:port`` (the Runtime API, and the extensions and
    telemetry APIs, which Lambda serves on the same address). AWS_XRAY_DAEMON_ADDRESS is
    ``host:port`` or ``udp:host:port tcp:host:port``. These are Lambda's variables, not
    ours: a malformed one is skipped rather than raised, since the function cannot fix it.
    """
    return _parse_plumbing(plumbing_texts(environ))


def plumbing_texts(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The ``host:port`` texts of Lambda's plumbing variables, unparsed (see plumbing_entries)."""
    texts: list[str] = []
    runtime_api = environ.get("AWS_LAMBDA_RUNTIME_API", "")
    if runtime_api:
        texts.append(runtime_api)
    for token in environ.get("AWS_XRAY_DAEMON_ADDRESS", "").split():
        for prefix in ("udp:", "tcp:"):
            if token.startswith(prefix):
                token = token[len(prefix) :]
        texts.append(token)
    return tuple(texts)


def _parse_plumbing(texts: tuple[str, ...]) -> tuple[_Entry, ...]:
    entries: list[_Entry] = []
    for text in texts:
        try:
            entries.append(parse_entry(text.strip(), source="plumbing"))
        except ConfigError:
            continue
    return tuple(entries)


# --- the rule -----------------------------------------------------------------------------


@register
class Network(Rule):
    """The ``network`` policy: outbound connections, datagrams, DNS lookups, listening sockets.

    Example::

        guard(network=Network("block", allow=["*.amazonaws.com:443", "10.0.0.0/8"]))
    """

    policy = "network"

    def _compile(self, entries: tuple[str, ...], *, source: str) -> None:
        self._entries = tuple(parse_entry(entry, source=source) for entry in entries)
        # Lambda's plumbing is read now, so that changing os.environ later can neither
        # loosen nor break this rule, but parsed on the first decision: its addresses are
        # IPs, and parsing an IP imports ipaddress (~1.5 ms of every guarded cold start,
        # for a handler that may never touch the network). It never raises.
        self._plumbing = plumbing_texts(os.environ)
        self._split(self._entries, complete=not self._plumbing)

    def _split(self, parsed: tuple[_Entry, ...], *, complete: bool) -> None:
        # Assigned in this order, the flag last: a thread that sees it set sees the rest,
        # and two threads completing at once compute the same tuples.
        self._names = tuple(e for e in parsed if e.kind in ("name", "glob"))
        self._addresses = tuple(e for e in parsed if e.kind in ("ip", "net"))
        self._unix = tuple(e for e in parsed if e.kind == "unix")
        self._complete = complete

    def permits(self, event: Event) -> bool:
        if not self._complete:  # the first decision: the plumbing entries join the rest
            self._split(self._entries + _parse_plumbing(self._plumbing), complete=True)
        target = event.subject
        if not isinstance(target, NetworkTarget) or target.host is None:
            return False
        action, port = event.action, target.port
        if target.family == "unix":
            import fnmatch  # here, not at import: fnmatch brings re (~3 ms of cold start)

            return any(fnmatch.fnmatchcase(target.host, str(e.value)) for e in self._unix)
        ip = target.ip
        if ip is None:
            name = normalise_name(target.host)
            return any(e.matches_name(name, port, action) for e in self._names)
        if any(e.matches_ip(ip, port, action) for e in self._addresses):
            return True
        # An IP that an allowed name resolved to is allowed under that name's entry.
        return any(
            e.matches_name(name, port, action) for name in names_for(ip) for e in self._names
        )
