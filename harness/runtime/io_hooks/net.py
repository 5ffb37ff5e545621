"""No network: name lookups and connections to anything but this machine raise and emit `net`.

Loopback stays open (torchrun / gloo rendezvous). The parent also puts the child in its own network
namespace where it can; these hooks are what records the attempt (and the only barrier otherwise).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
from typing import Any

from harness.runtime.io_hooks.state import HookState

_LOCAL_NAMES = {"", "localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class NetworkBlocked(PermissionError):
    """Raised for a blocked network attempt (an OSError, so scripts that tolerate offline still run)."""


def _is_local_ip(host: str) -> bool | None:
    """True/False for an IP literal, None for a name."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return ip.is_loopback or ip.is_unspecified


def local_host(host: Any, own: set[str]) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    h = str(host).strip().lower().rstrip(".")
    if h in _LOCAL_NAMES or h in own:
        return True
    return bool(_is_local_ip(h))


def _split(address: Any) -> tuple[Any, Any]:
    if isinstance(address, tuple) and address:
        return address[0], address[1] if len(address) > 1 else None
    return address, None


def install(st: HookState) -> None:
    own = {socket.gethostname().lower()}

    def block(host: Any, port: Any, how: str) -> NetworkBlocked:
        st.net(host, port, how)
        return NetworkBlocked(errno.EACCES, f"network access blocked by the harness sandbox: {host}:{port}")

    def inet(sock: Any) -> bool:
        return sock.family in (socket.AF_INET, socket.AF_INET6)

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_sendto = socket.socket.sendto

    @functools.wraps(real_connect)
    def connect(self: Any, address: Any) -> Any:
        if inet(self):
            host, port = _split(address)
            if not local_host(host, own):
                raise block(host, port, "connect")
        return real_connect(self, address)

    @functools.wraps(real_connect_ex)
    def connect_ex(self: Any, address: Any) -> Any:
        if inet(self):
            host, port = _split(address)
            if not local_host(host, own):
                block(host, port, "connect_ex")
                return errno.EACCES
        return real_connect_ex(self, address)

    @functools.wraps(real_sendto)
    def sendto(self: Any, data: Any, *args: Any) -> Any:
        address = args[-1] if args else None
        if inet(self):
            host, port = _split(address)
            if not local_host(host, own):
                raise block(host, port, "sendto")
        return real_sendto(self, data, *args)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign]

    real_getaddrinfo = socket.getaddrinfo

    @functools.wraps(real_getaddrinfo)
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        h = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if not local_host(h, own) and _is_local_ip(str(h)) is None:  # a name: DNS is network
            raise block(host, port, "getaddrinfo")
        return real_getaddrinfo(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo

    for fname in ("gethostbyname", "gethostbyname_ex"):
        real = getattr(socket, fname)

        def make(real: Any, fname: str) -> Any:
            @functools.wraps(real)
            def lookup(host: Any) -> Any:
                if not local_host(host, own) and _is_local_ip(str(host)) is None:
                    raise block(host, None, fname)
                return real(host)

            return lookup

        setattr(socket, fname, make(real, fname))

    real_create = socket.create_connection

    @functools.wraps(real_create)
    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        host, port = _split(address)
        if not local_host(host, own):
            raise block(host, port, "create_connection")
        return real_create(address, *args, **kwargs)

    socket.create_connection = create_connection
