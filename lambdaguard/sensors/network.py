"""Network sensors: patches on ``socket`` and the matching audit-event handlers.

Patched (Python API)                         Audit event (backstop)
socket.socket.connect / connect_ex           socket.connect
socket.socket.sendto / sendmsg               socket.sendto / socket.sendmsg
socket.socket.bind                           socket.bind
socket.socket.listen                         (none: listening is judged at bind too)
socket.getaddrinfo                           socket.getaddrinfo
socket.gethostbyname / gethostbyname_ex      socket.gethostbyname
socket.gethostbyaddr                         socket.gethostbyaddr
socket.getnameinfo                           socket.getnameinfo

asyncio and every HTTP client end up in these calls (asyncio's getaddrinfo runs in the
default executor, which lambdaguard.propagation keeps inside the scope).

A blocked connect closes the socket *before* raising: the Violation is not an OSError, so
callers' ``except OSError: sock.close()`` cleanup (socket.create_connection, urllib3)
does not run, and the descriptor would otherwise leak.

The hot path: the methods of ``socket.socket`` and ``socket.getaddrinfo`` are replaced by
plain functions rather than wrapt wrappers (wrapt's subclassed FunctionWrapper costs about
1.5 µs a call on an inherited C method, a plain function under 0.1 µs; both still bind as
methods and pickle by name). Each operation is decided once:

* a connect (or bind) to an exact ``(IP address, port)`` on an IP socket whose host the
  slow path has seen is called straight through: C resolves nothing before its audit
  event, and the audit hook decides it from the same objects, closes the socket before
  raising, and remembers an allow verdict;
* an operation that these merged rules allowed before (the allow memo of
  lambdaguard.decide, keyed by the exact built-in values C will use) is called straight
  through, with no Event, no quiet mark and no thread-local: the audit hook's
  ``AUDIT_KNOWN_ALLOWED`` check finds the same key in the same memo and returns;
* everything else (names, look-alike arguments, other families, a first sight) takes the
  patch's slow path, which decides before C runs, reports, and marks its audit event
  quiet while the original runs.
"""

from __future__ import annotations

import _socket
import contextvars
import operator
import os

from lambdaguard import _internal, scope
from lambdaguard.decide import allowed_before, blocked, check, enforce, remember_allowed
from lambdaguard.errors import Violation
from lambdaguard.policies.network import (
    NetworkTarget,
    parse_ip,
    remember_resolution,
    resolution_known,
)
from lambdaguard.policy import Active, Event, Mode, Rule
from lambdaguard.report import safe_text
from lambdaguard.scope import current
from lambdaguard.sensors._patching import patch, proceed, register_post_import

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~5 ms of cold start)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any
    Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]

POLICY = "network"



# The C-level member, read past any property a socket subclass defines: a ``family`` that
# lies would otherwise have an inet address judged as, say, a unix path.
_REAL_FAMILY = _socket.socket.__dict__["family"]


_read_family = _REAL_FAMILY.__get__  # bound once: an attribute lookup per call otherwise


def real_family(sock: object) -> int:
    """The address family the kernel socket has, whatever the Python object claims."""
    try:
        return int(_read_family(sock))
    except TypeError:  # not a socket object at all
        return -1


def _family_name(family: int) -> str:
    if family == _socket.AF_INET:
        return "inet"
    if family == _socket.AF_INET6:
        return "inet6"
    if family == getattr(_socket, "AF_UNIX", None):
        return "unix"
    try:
        import socket  # for the names of the rarer families only

        return socket.AddressFamily(family).name.removeprefix("AF_").lower()
    except ValueError:
        return f"family{family}"


def _host_text(host: object) -> str:
    if isinstance(host, bytes | bytearray):
        return bytes(host).decode("ascii", "backslashreplace")
    if isinstance(host, str):
        return str.__str__(host)  # the characters themselves, whatever a subclass's __str__ says
    return str(host)


def _exact(value: object) -> object:
    """``value`` as the exact built-in the C code will use, so judged and used data agree.

    A subclass of str, bytes, int or tuple can override ``__str__``, ``__eq__``,
    ``__getitem__`` or ``encode``, and an object with ``__index__`` runs code when C reads
    it as a port; the patches judge these exact copies and hand the same copies to the
    original, so the decision is about what really happens and no user code runs between
    the decision and the call.
    """
    kind = type(value)
    if kind is str or kind is bytes or kind is int or value is None:
        return value
    if kind is tuple:
        pair: tuple[object, ...] = value  # type: ignore[assignment]  # checked: kind is tuple
        if len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is int:
            return value  # the common (host, port): nothing to copy
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return operator.index(value)
    if isinstance(value, tuple):
        return tuple(_exact(tuple.__getitem__(value, i)) for i in range(tuple.__len__(value)))
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(memoryview(value))
    if hasattr(kind, "__index__"):
        # C would call it; call it once, here, before deciding
        return operator.index(value)  # type: ignore[arg-type]  # checked: has __index__
    return value


def _audit_host(host: object) -> str:
    """A looked-up host as the audit hook sees it, where only exact str and bytes are trusted.

    getaddrinfo calls a str subclass's own ``encode`` and resolves whatever it returns,
    so its characters say nothing about the name resolved: such a host gets a target that
    no name entry but ``*`` matches.
    """
    if type(host) is str or isinstance(host, bytes | bytearray) or host is None:
        return _host_text(host)
    return f"<{type(host).__name__} {_host_text(host)!r}>"


def address_target(family: int, address: object) -> NetworkTarget:
    """The NetworkTarget for a socket address of ``family`` (connect, bind, sendto)."""
    name = _family_name(family)
    if name == "unix":
        return NetworkTarget("unix", unix_path(address))
    if name in ("inet", "inet6") and isinstance(address, tuple) and len(address) >= 2:
        address = _exact(address)
        assert isinstance(address, tuple)
        host = _host_text(address[0])
        if host == "":
            host = "0.0.0.0" if name == "inet" else "::"
        elif host == "<broadcast>":
            host = "255.255.255.255"
        port = address[1] if type(address[1]) is int else None
        return NetworkTarget(name, host, port)
    return NetworkTarget(name, safe_text(repr(address)))


def unix_path(address: object) -> str:
    """An AF_UNIX address as the policy sees it: ``@name`` or an absolute, normalised path.

    Normalised so that ``/run/app/../../var/run/docker.sock`` cannot pass for a socket
    under ``unix:/run/app/*``, and made absolute so that a relative path is judged by
    where it points. Symbolic links are not followed (docs/network.md, "Limits").
    """
    if isinstance(address, bytes | bytearray | memoryview):
        raw = bytes(address)
        # Linux abstract-namespace addresses start with NUL; show them as "@name".
        if raw.startswith(b"\0"):
            return "@" + safe_text(raw[1:])
        text = safe_text(raw)
    else:
        text = str(address)
        if text.startswith("\0"):
            return "@" + safe_text(text[1:])
    if not text:
        return text  # autobind: the kernel picks an abstract name
    try:
        return os.path.abspath(text)
    except OSError:  # the working directory is gone; still collapse "..", "." and "//"
        return os.path.normpath(text)


def _event(action: str, target: NetworkTarget) -> Event:
    return Event(POLICY, action, str(target), target)


def _looked_up_name(host: object) -> str:
    """The name the C resolver will really be asked for.

    getaddrinfo passes the host to C as a NUL-terminated string and does not refuse an
    embedded NUL, so ``"secret.attacker.com\\0.amazonaws.com"`` is resolved as
    ``secret.attacker.com``. Judging (and remembering) the whole string would let it pass
    ``*.amazonaws.com``; judge what is resolved.
    """
    return _host_text(host).split("\0", 1)[0]


def _lookup_event(host: object, port: object = None) -> Event | None:
    """The event for a forward name lookup, or None when no lookup leaves the process.

    A numeric host (``"127.0.0.1"``) or no host is not a name lookup: nothing is sent,
    and the connect that follows is what gets judged.
    """
    if host is None:
        return None
    text = _looked_up_name(host)
    if text == "" or parse_ip(text) is not None:
        return None
    port_number = port if isinstance(port, int) else None
    if isinstance(port, str | bytes) and _host_text(port).isdigit():
        port_number = int(_host_text(port))
    return _event("resolve", NetworkTarget("name", text, port_number))


def _reverse_event(host: object) -> Event | None:
    text = _host_text(host)
    if parse_ip(text) is None:
        return _lookup_event(text)  # gethostbyaddr("name") resolves the name first
    return _event("reverse-resolve", NetworkTarget("ip", text))


def _rules() -> tuple[Rule, ...] | None:
    active = current()
    if active is None or _internal.busy():
        return None
    return active.rules.get(POLICY)


# --- patches on socket.socket ------------------------------------------------------------------

_scope_get = scope._scope.get
_IP_FAMILIES = frozenset({_socket.AF_INET, _socket.AF_INET6})
_EXACT_TYPES = frozenset({str, bytes, int, type(None)})


# The fast paths take only an address that is an exact (str, int) tuple, the shape of nearly
# every connect: exact built-ins, so that hashing and comparing a key runs no user code (a
# str subclass's __eq__ could otherwise claim to be an allowed host), and exactly what the
# C code will use. Anything else takes the slow path, which copies it. The test is written
# out where it is used: a function call would cost as much as the rest.


_MISSING: Any = object()
# Hosts of exact (str, int) addresses that are IP addresses (no "%scope"): the connects
# that _connect_method leaves to the audit hook. Bounded; forgetting one only means the
# slow path decides it once more.
_ip_hosts: set[str] = set()
_IP_HOSTS_LIMIT = 4096


def _ip_host(address: Any) -> str | None:
    """The host of an exact ``(str, int)`` tuple if it is an IP address with no scope id."""
    if (
        type(address) is tuple
        and len(address) == 2
        and type(address[0]) is str
        and type(address[1]) is int
        and "%" not in address[0]
        and parse_ip(address[0]) is not None
    ):
        return address[0]
    return None


def _connect_method(
    original: Callable[..., Any], action: str, audit_event: str
) -> Callable[..., Any]:
    """The replacement for ``socket.socket.connect``/``connect_ex``/``bind``: one address.

    Spelled with the one positional parameter rather than ``*args, **kwargs``: packing
    and unpacking those costs more than the rest of the fast path.
    """
    close_on_block = action == "connect"

    @_internal.wraps(original)
    def method(self: Any, address: Any = _MISSING, /, *rest: Any) -> Any:
        if address is _MISSING or rest:  # a call C refuses before doing anything: let it say why
            return original(self, *(rest if address is _MISSING else (address, *rest)))
        # current() inlined: this runs on every connect in the process, guarded or not.
        state = _scope_get()
        if state is None and scope._baseline_active is None:
            return original(self, address)
        if type(address) is tuple and len(address) == 2:
            host, port = address  # an exact tuple: unpacking it runs no user code
            if (
                type(host) is str
                and type(port) is int
                and host in _ip_hosts
                and _read_family(self) in _IP_FAMILIES
            ):
                # An exact (IP address, port) on an IP socket: C resolves nothing before
                # its audit event, and the audit hook judges that event exactly as this
                # patch would (same target from the same objects, same memo, same
                # clean-up), so the hook is the one decision; a remembered one is a
                # single memo lookup there.
                return original(self, address)
        active = scope._baseline_active if state is None else state.active()
        if active is None or active.rules.get(POLICY) is None:
            return original(self, address)
        return _decide_address(
            original, self, (address,), {}, active, action, audit_event, close_on_block
        )

    method.__module__ = "socket"  # pickles by name, as socket.socket.<method>
    return method


def _address_method(
    original: Callable[..., Any], action: str, audit_event: str, *, close_on_block: bool
) -> Callable[..., Any]:
    """The replacement for ``socket.socket.sendto``/``sendmsg``: the address is one of several."""
    position = _ADDRESS_POSITIONS[action]

    @_internal.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        # scope.current() and ScopeState.active() inlined, as in audit._hook: a call would
        # add a frame to every send in the process, guarded or not.
        state = _scope_get()
        active = (
            scope._baseline_active
            if state is None
            else state._active
            if state._version == scope._baseline_version
            else state.active()
        )
        if active is None or active.rules.get(POLICY) is None:
            return original(self, *args, **kwargs)
        index = position(args)
        address = None if index is None else args[index]
        if type(address) is tuple and len(address) == 2 and not kwargs:
            host, port = address  # an exact tuple: unpacking it runs no user code
            if type(host) is str and type(port) is int:
                try:
                    family = _read_family(self)
                except TypeError:
                    family = -1
                if (action, family, address) in active.allowed:
                    return original(self, *args)  # as in _connect_method
        return _decide_address(
            original, self, args, kwargs, active, action, audit_event, close_on_block
        )

    method.__module__ = "socket"
    return method


def _decide_address(
    original: Callable[..., Any],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    active: Active,
    action: str,
    audit_event: str,
    close_on_block: bool,
) -> Any:
    """The slow path of an address method: exact copies, the decision, the report."""
    rules = active.rules[POLICY]
    if _internal.busy():
        return original(instance, *args, **kwargs)
    position = _ADDRESS_POSITIONS[action](args)
    if position is None:
        return proceed(
            audit_event, original, (instance, *args), kwargs, same=lambda a: a[0] is instance
        )
    given = args[position]
    address = _exact(given)
    if address is not given:
        args = (*args[:position], address, *args[position + 1 :])
    family = real_family(instance)
    # IP families only: a unix path is made absolute against the working directory,
    # which can change, so its verdict is not a function of the key alone.
    key = (action, family, address) if family in _IP_FAMILIES else None
    ip_host = _ip_host(address) if key is not None else None
    if ip_host is not None:  # from now on the audit hook alone decides it (_connect_method)
        if len(_ip_hosts) >= _IP_HOSTS_LIMIT:
            _ip_hosts.clear()
        _ip_hosts.add(ip_host)
    if key is None or not allowed_before(active, key):
        event = _event(action, address_target(family, address))
        verdict = check(event, rules)
        if verdict is Mode.BLOCK:
            if close_on_block:
                instance.close()
            raise blocked(event)
        if verdict is Mode.ALLOW and key is not None:
            remember_allowed(active, key)
    return proceed(
        audit_event,
        original,
        (instance, *args),
        kwargs,
        same=lambda a: len(a) > 1 and a[0] is instance and a[1] is address,
    )


def _connect_position(args: tuple[Any, ...]) -> int | None:
    return 0 if args else None  # connect(address), connect_ex(address), bind(address)


def _sendto_position(args: tuple[Any, ...]) -> int | None:
    return len(args) - 1 if len(args) >= 2 else None  # sendto(data[, flags], address)


def _sendmsg_position(args: tuple[Any, ...]) -> int | None:
    return 3 if len(args) >= 4 else None  # sendmsg(buffers, ancdata, flags, address)


# Where the address is among the positional arguments (these methods take no keywords).
_ADDRESS_POSITIONS: dict[str, Callable[[tuple[Any, ...]], int | None]] = {
    "connect": _connect_position,
    "bind": _connect_position,
    "sendto": _sendto_position,
    "sendmsg": _sendmsg_position,
}


def _listen_method(original: Callable[..., Any]) -> Callable[..., Any]:
    @_internal.wraps(original)
    def listen(self: Any, *args: Any, **kwargs: Any) -> Any:
        rules = _rules()
        if rules is None:
            return original(self, *args, **kwargs)
        try:
            address = _socket.socket.getsockname(self)  # not a subclass's override
        except OSError:
            address = None
        enforce(_event("listen", address_target(real_family(self), address)), rules)
        return original(self, *args, **kwargs)

    listen.__module__ = "socket"
    return listen


# --- patches on the socket module's name lookups ------------------------------------------


_type = type  # getaddrinfo's parameter of that name hides the builtin


def _getaddrinfo_function(original: Callable[..., Any]) -> Callable[..., Any]:
    """The replacement for ``socket.getaddrinfo``, with the same signature as socket.py's.

    Spelled out rather than ``*args, **kwargs`` (packing those costs more than the fast
    path), and calling the original positionally, as every version from 3.10 to 3.13 takes.
    """

    @_internal.wraps(original)
    def getaddrinfo(
        host: Any, port: Any, family: Any = 0, type: Any = 0, proto: Any = 0, flags: Any = 0
    ) -> Any:
        # scope.current() inlined, as in _address_method: every lookup pays for a call.
        state = _scope_get()
        active = (
            scope._baseline_active
            if state is None
            else state._active
            if state._version == scope._baseline_version
            else state.active()
        )
        if active is None or active.rules.get(POLICY) is None:
            return original(host, port, family, type, proto, flags)
        if (
            _type(host) is str
            and _type(port) in _EXACT_TYPES
            and ("resolve", host) in active.allowed
        ):
            # Allowed before under these rules; the audit hook finds the same key
            # (_known_allowed_lookup). The answers are still remembered: they may be new.
            result = original(host, port, family, type, proto, flags)
            name = host.partition("\0")[0]  # _looked_up_name of an exact str
            for info in result:
                if not resolution_known(name, info[4][0]):
                    remember_resolution(name, [str(info[4][0]) for info in result])
                    break
            return result
        return _decide_getaddrinfo(original, (host, port, family, type, proto, flags), {}, active)

    return getaddrinfo


def _decide_getaddrinfo(
    original: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], active: Active
) -> Any:
    rules = active.rules.get(POLICY)
    if rules is None or _internal.busy():
        return original(*args, **kwargs)
    args, kwargs = _exact_arguments(args, kwargs, ("host", "port"))
    host = args[0] if args else kwargs.get("host")
    port = args[1] if len(args) > 1 else kwargs.get("port")
    # The memo key is the exact host as given: a lookup's verdict ignores the port.
    key = ("resolve", host) if type(host) is str else None
    looked_up = key is not None and allowed_before(active, key)
    if not looked_up:
        event = _lookup_event(host, port)
        if event is not None:
            looked_up = True
            verdict = check(event, rules)
            if verdict is Mode.BLOCK:
                raise blocked(event)
            if verdict is Mode.ALLOW and key is not None:
                remember_allowed(active, key)
    result = proceed("socket.getaddrinfo", original, args, kwargs, same=lambda a: a[0] is host)
    if looked_up:
        remember_resolution(_looked_up_name(host), [str(info[4][0]) for info in result])
    return result


def _exact_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The first ``len(names)`` arguments, positional or by keyword, made exact."""
    if not kwargs and all(type(a) in _EXACT_TYPES for a in args[: len(names)]):
        return args, kwargs  # the usual call: nothing to copy
    args = tuple(_exact(a) if i < len(names) else a for i, a in enumerate(args))
    kwargs = {k: _exact(v) if k in names else v for k, v in kwargs.items()}
    return args, kwargs


def _gethostbyname(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rules = _rules()
    if rules is None:
        return wrapped(*args, **kwargs)
    args, kwargs = _exact_arguments(args, kwargs, ("hostname",))
    host = args[0] if args else kwargs.get("hostname")
    event = _lookup_event(host)
    if event is not None:
        enforce(event, rules)
    result = proceed("socket.gethostbyname", wrapped, args, kwargs, same=lambda a: a[0] is host)
    if event is not None:
        addresses = result[2] if isinstance(result, tuple) else [result]
        remember_resolution(_looked_up_name(host), addresses)
    return result


def _gethostbyaddr(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rules = _rules()
    if rules is None or not args:
        return wrapped(*args, **kwargs)
    args, kwargs = _exact_arguments(args, kwargs, ("host",))
    host = args[0]
    event = _reverse_event(host)
    if event is not None:
        enforce(event, rules)
    return proceed("socket.gethostbyaddr", wrapped, args, kwargs, same=lambda a: a[0] is host)


def _getnameinfo(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rules = _rules()
    if rules is None:
        return wrapped(*args, **kwargs)
    args, kwargs = _exact_arguments(args, kwargs, ("sockaddr", "flags"))
    event = _nameinfo_event(args)
    if event is not None:
        enforce(event, rules)
    # Through proceed() even when there was nothing to decide: the audit event carries no
    # flags, so the hook would take a numeric-only call for a reverse lookup and block it.
    sockaddr = args[0] if args else None
    return proceed("socket.getnameinfo", wrapped, args, kwargs, same=lambda a: a[0] is sockaddr)


def _nameinfo_event(args: tuple[Any, ...]) -> Event | None:
    if not args or not isinstance(args[0], tuple) or not args[0]:
        return None
    flags = args[1] if len(args) > 1 and isinstance(args[1], int) else 0
    host = args[0][0]
    if parse_ip(_host_text(host)) is not None and flags & _socket.NI_NUMERICHOST:
        return None  # numeric in, numeric out: no lookup leaves the process
    return _reverse_event(host)


# --- HTTP client libraries: keep a Violation a Violation -------------------------------------


def _unwrap_botocore_violation(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # botocore's URLLib3Session.send wraps any unexpected exception in HTTPClientError,
    # which its "standard" retry mode treats as transient: a blocked connect would be
    # retried (and reported) up to max_attempts times. Re-raise the Violation itself;
    # botocore's endpoint then fails the call after one attempt.
    try:
        return wrapped(*args, **kwargs)
    except Exception as exc:
        cause = getattr(exc, "kwargs", {}).get("error") if hasattr(exc, "kwargs") else None
        if isinstance(cause, Violation):
            raise cause from None
        raise


def _patch_botocore(module: Any) -> None:
    patch(module, "URLLib3Session.send", _unwrap_botocore_violation)


def _violation_in_group(exc: BaseException) -> Violation | None:
    """The first Violation among the leaves of an exception group, or None."""
    for inner in getattr(exc, "exceptions", ()):
        if isinstance(inner, Violation):
            return inner
        found = _violation_in_group(inner)
        if found is not None:
            return found
    return None


def _unwrap_anyio_violation(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # anyio.connect_tcp runs its Happy Eyeballs attempts in a task group and only collects
    # OSErrors; a Violation escapes the group wrapped in an ExceptionGroup, so httpx's
    # async client (and anything else on anyio) would surface an ExceptionGroup instead
    # of the Violation the caller can catch. Unwrap it.
    async def call() -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except BaseException as exc:
            violation = _violation_in_group(exc)
            if violation is not None:
                raise violation from None
            raise

    return call()


def _patch_anyio(module: Any) -> None:
    patch(module, "connect_tcp", _unwrap_anyio_violation)


# asyncio's Happy Eyeballs (create_connection(happy_eyeballs_delay=...), which aiohttp and
# others turn on) runs each attempt through asyncio.staggered, which swallows every
# exception of an attempt, and then builds its error from the OSErrors _connect_sock kept:
# with a blocked attempt that list is empty and the caller got an IndexError (or an
# OSError, which clients retry). _connect_sock now records the Violation, and
# create_connection re-raises it in place of whatever error it would have made up.
_asyncio_violations: contextvars.ContextVar[list[Violation] | None] = contextvars.ContextVar(
    "lambdaguard_asyncio_violations", default=None
)


def _record_asyncio_violation(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    async def call() -> Any:
        try:
            return await wrapped(*args, **kwargs)
        except Violation as exc:
            seen = _asyncio_violations.get()
            if seen is not None:
                seen.append(exc)
            raise

    return call()


def _reraise_asyncio_violation(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    async def call() -> Any:
        seen: list[Violation] = []
        token = _asyncio_violations.set(seen)  # attempts run in copies of this context
        try:
            return await wrapped(*args, **kwargs)
        except Violation:
            raise
        except Exception:
            if seen:
                raise seen[0] from None
            raise
        finally:
            _asyncio_violations.reset(token)

    return call()


def _patch_asyncio(module: Any) -> None:
    loop_class = getattr(module, "BaseEventLoop", None)
    if loop_class is None or not hasattr(loop_class, "_connect_sock"):
        return  # a future asyncio without this private helper: nothing to mend
    patch(module, "BaseEventLoop._connect_sock", _record_asyncio_violation)
    patch(module, "BaseEventLoop.create_connection", _reraise_asyncio_violation)


# --- install and audit ------------------------------------------------------------------------


def install() -> None:
    # socket is patched when first imported (now, if it already is): importing it here
    # would add ~6 ms to the cold start of a handler that never touches the network. Until
    # then the audit hook is the sensor, as it is for code that uses _socket directly.
    register_post_import("socket", _patch_socket)
    register_post_import("botocore.httpsession", _patch_botocore)
    register_post_import("anyio", _patch_anyio)
    register_post_import("asyncio.base_events", _patch_asyncio)


def _fast(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` behind its compiled fast path (lambdaguard/_socket_fastpath.c), if built.

    The fast path makes two of ``method``'s checks in C (no policy in force; an exact IP
    address left to the audit hook) and calls the original C method; every other call
    reaches ``method`` with the same arguments. Without the extension, ``method`` itself.
    """
    try:
        from lambdaguard._socket_fastpath import Forward
    except ImportError:
        return method
    original = method.__wrapped__  # type: ignore[attr-defined]
    return Forward(original, method, _ip_hosts, _IP_FAMILIES, _REAL_FAMILY, scope._scope, scope)


def _patch_socket(socket: Any) -> None:
    # The socket methods and getaddrinfo, on every connect and lookup: plain functions
    # (see the module docstring). A plain function binds like the C method it replaces.
    cls = socket.socket
    cls.connect = _fast(_connect_method(cls.connect, "connect", "socket.connect"))
    cls.connect_ex = _fast(_connect_method(cls.connect_ex, "connect", "socket.connect"))
    cls.bind = _fast(_connect_method(cls.bind, "bind", "socket.bind"))
    cls.sendto = _address_method(cls.sendto, "sendto", "socket.sendto", close_on_block=False)
    if hasattr(cls, "sendmsg"):
        cls.sendmsg = _address_method(
            cls.sendmsg, "sendmsg", "socket.sendmsg", close_on_block=False
        )
    cls.listen = _listen_method(cls.listen)
    socket.getaddrinfo = _getaddrinfo_function(socket.getaddrinfo)
    # The others are builtins, which do not bind as methods where a plain function would
    # (``class R: lookup = socket.gethostbyname``): wrapt keeps that, and they are rare.
    patch(socket, "gethostbyname", _gethostbyname)
    patch(socket, "gethostbyname_ex", _gethostbyname)
    patch(socket, "gethostbyaddr", _gethostbyaddr)
    patch(socket, "getnameinfo", _getnameinfo)


def _audit_address(
    action: str, *, close_on_block: bool
) -> Callable[[tuple[Any, ...], Active], None]:
    def handler(args: tuple[Any, ...], active: Active) -> None:
        rules = active.rules.get(POLICY)
        if rules is None or len(args) < 2:
            return
        sock, address = args[0], args[1]
        if address is None:
            return
        family = real_family(sock)
        event = _event(action, address_target(family, address))
        verdict = check(event, rules)
        if verdict is Mode.BLOCK:
            if close_on_block:
                sock.close()
            raise blocked(event)
        if (
            verdict is Mode.ALLOW
            and family in _IP_FAMILIES
            and type(address) is tuple
            and len(address) == 2
            and type(address[0]) is str
            and type(address[1]) is int
        ):
            # The key _known_allowed_address reads: the next such connect is one lookup.
            remember_allowed(active, (action, family, address))

    return handler


def _known_allowed_address(action: str) -> Callable[[tuple[Any, ...], Active], bool]:
    def known(args: tuple[Any, ...], active: Active) -> bool:
        # The key the patch remembers, read from the C-level arguments (an exact tuple):
        # the socket's real family and the exact address object C is about to use. The
        # fast path's shape test, as in _address_method; unpacking runs no user code.
        try:
            sock, address = args
        except ValueError:
            return False
        if type(address) is not tuple or len(address) != 2:
            return False
        host, port = address
        if type(host) is not str or type(port) is not int:
            return False
        try:
            family = _read_family(sock)
        except TypeError:
            return False
        return (action, family, address) in active.allowed

    return known


def _known_allowed_lookup(args: tuple[Any, ...], active: Active) -> bool:
    # An exact str host only: a subclass's own encode decides what is really resolved.
    return bool(args) and type(args[0]) is str and ("resolve", args[0]) in active.allowed


def _audit_lookup(
    make: Callable[[tuple[Any, ...]], Event | None],
) -> Callable[[tuple[Any, ...], Active], None]:
    def handler(args: tuple[Any, ...], active: Active) -> None:
        rules = active.rules.get(POLICY)
        if rules is None:
            return
        event = make(args)
        if event is not None:
            enforce(event, rules)

    return handler


AUDIT_HANDLERS = {
    "socket.connect": _audit_address("connect", close_on_block=True),
    "socket.sendto": _audit_address("sendto", close_on_block=False),
    "socket.sendmsg": _audit_address("sendmsg", close_on_block=False),
    "socket.bind": _audit_address("bind", close_on_block=False),
    "socket.getaddrinfo": _audit_lookup(
        lambda a: _lookup_event(_audit_host(a[0]), a[1] if len(a) > 1 else None)
    ),
    "socket.gethostbyname": _audit_lookup(lambda a: _lookup_event(a[0]) if a else None),
    "socket.gethostbyaddr": _audit_lookup(lambda a: _reverse_event(a[0]) if a else None),
    "socket.getnameinfo": _audit_lookup(lambda a: _nameinfo_event((a[0], 0)) if a else None),
}

AUDIT_KNOWN_ALLOWED = {
    "socket.connect": _known_allowed_address("connect"),
    "socket.sendto": _known_allowed_address("sendto"),
    "socket.sendmsg": _known_allowed_address("sendmsg"),
    "socket.bind": _known_allowed_address("bind"),
    "socket.getaddrinfo": _known_allowed_lookup,
}

# The same readers in the compiled gate (lambdaguard/_audit_gate.c): the key's tag, and for
# an address the member descriptor that reads a socket's real family.
GATE_MEMOS = {
    **{
        event: ("address", action, _REAL_FAMILY)
        for event, action in (
            ("socket.connect", "connect"),
            ("socket.sendto", "sendto"),
            ("socket.sendmsg", "sendmsg"),
            ("socket.bind", "bind"),
        )
    },
    "socket.getaddrinfo": ("lookup", "resolve"),
}
