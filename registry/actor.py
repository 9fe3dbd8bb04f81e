"""Who does a change: `user@host`, recorded with every ledger event (no database code here, so the
supervisor client can name its caller without importing the registry core)."""

from __future__ import annotations

import functools
import getpass
import os
import re
import socket

#: A host's name on a shared registry: what `--on` and `--host` take.
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


#: What `getpass.getuser` reads before the account database, in its order.
_LOGIN_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")


def current_actor() -> str:
    """`user@host` of this process, recorded with every event."""
    return f"{_login_name(os.getuid(), *map(os.environ.get, _LOGIN_VARIABLES))}@{host_label()}"


@functools.lru_cache(maxsize=8)
def _login_name(uid: int, *login_variables: str | None) -> str:
    """`getpass.getuser()`, once per set of its inputs: without a login variable it reads the
    account database (/etc/passwd, on every registration before)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def host_label() -> str:
    """`host_name()`, or the system's name as it is spelled when that is not a usable host name
    (an event still says where it happened)."""
    try:
        return host_name()
    except ValueError:
        return socket.gethostname()


def host_name() -> str:
    """This host's name on a shared registry: `$MODELDECK_HOST_NAME`, else the system's host name."""
    name = os.environ.get("MODELDECK_HOST_NAME") or socket.gethostname().split(".")[0] or "localhost"
    if not HOST_NAME.match(name):
        raise ValueError(
            f"host name {name!r} is not usable: letters, digits, '.', '_' and '-' only, at most 128 "
            "(set MODELDECK_HOST_NAME)"
        )
    return name


def host_address() -> str:
    """Where other hosts reach this one: `$MODELDECK_HOST_ADDRESS`, else the address of the interface
    the default route leaves by (no packet is sent), else the host's name."""
    given = os.environ.get("MODELDECK_HOST_ADDRESS")
    if given:
        return given
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the route
            return str(probe.getsockname()[0])
    except OSError:
        return host_name()
