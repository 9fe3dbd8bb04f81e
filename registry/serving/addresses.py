"""The URLs a deployment answers on: the one to use on this host, and the one to give other hosts.

A server bound to a wildcard address (`0.0.0.0`, `::`) answers on every interface; `127.0.0.1` works
only here, so the address printed for clients elsewhere is this host's own: the source address of its
route outward (a UDP socket `connect` sends nothing), else its host name.
"""

from __future__ import annotations

import socket

WILDCARDS = ("0.0.0.0", "::", "")
#: A documentation address (RFC 5737 / 3849): never a real host, routed like any other.
_OUTWARD = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def local_url(host: str, port: int) -> str:
    """The URL that reaches a server bound to `host` from this host."""
    if host in WILDCARDS:
        host = "127.0.0.1"
    return f"http://{_bracketed(host)}:{port}"


def outside_url(host: str, port: int) -> str | None:
    """The URL other hosts reach a server bound to a wildcard `host` at; None for a specific address
    (then `local_url` is the address to give)."""
    if host not in WILDCARDS:
        return None
    family = socket.AF_INET6 if host == "::" else socket.AF_INET
    return f"http://{_bracketed(host_address(family))}:{port}"


def host_address(family: socket.AddressFamily = socket.AF_INET) -> str:
    """This host's address on its route outward, or its name when it has no such route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((_OUTWARD[family], 9))
            address = probe.getsockname()[0]
    except OSError:
        return socket.gethostname()
    return address if address not in ("0.0.0.0", "::") else socket.gethostname()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
