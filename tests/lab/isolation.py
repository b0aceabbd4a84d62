"""No packet leaves the machine: the test session runs in a network namespace
of its own that has nothing but loopback.

A name lookup is traffic: outside a namespace of its own even ``localhost``
can reach the machine's DNS server (glibc asks DNS for the AAAA record of
``localhost`` when the hosts file has no ``::1 localhost`` line). Rather than
trust every test to resolve only fake names, :func:`isolate` moves the whole
pytest process, before any thread exists, into a fresh network namespace and
brings its ``lo`` up. There the only routes are the loopback ones: a packet to
any other address fails with ``ENETUNREACH`` before it is sent, a DNS query
to the machine's name server included. Threads and subprocesses started later
inherit the namespace; the lab's own namespaces (:mod:`lab.netns`) are made
from inside it and are as closed as before.

As root the process simply unshares its network namespace; otherwise it
unshares a user namespace with it (mapping its own uid and gid to themselves,
so nothing else changes) when the kernel allows unprivileged user namespaces.
Each way is first tried in a forked child, so a kernel that lets the unshare
succeed but refuses to bring ``lo`` up (some security modules do) never
leaves the session in a namespace without loopback. Where neither works (not
Linux, user namespaces disabled) the session is not isolated, the report
header says so, and ``tests/test_lab_isolation.py`` fails on Linux; a guard
(:func:`install_guard`) then refuses, in this process, every lookup of a name
and every connection or datagram to an address off loopback. It cannot see
lookups made outside Python's socket module (uvloop's, a subprocess's), which
is why it is only the fallback.

What the namespace cannot stop is a lookup handed to a daemon outside it over
a Unix socket (nscd, systemd-resolved's NSS module, mDNS): the guard test
checks that the machine's name service configuration has none.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import ipaddress
import os
import socket
import struct
import sys

__all__ = [
    "Isolation",
    "LeavesTheMachine",
    "install_guard",
    "isolate",
    "network_namespace_id",
]

_session: Isolation | None = None

# <sched.h>
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
# <linux/sockios.h>, <net/if.h>
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
# struct ifreq: a 16-byte interface name, then a union of 24 bytes of which
# the flags are the first short.
_IFREQ_FLAGS = struct.Struct("16sh22x")


@dataclasses.dataclass(frozen=True)
class Isolation:
    """How the session is kept from sending packets off the machine.

    Attributes:
        isolated: the session runs in a network namespace of its own.
        how: one line for the test report header.
        outside_namespace: the namespace the session started in (``net:[N]``),
            or ``None`` off Linux.
    """

    isolated: bool
    how: str
    outside_namespace: str | None


def network_namespace_id(task: str = "self") -> str:
    """The network namespace of a process or thread, as ``net:[inode]``.

    Args:
        task: ``self``, a pid, or ``self/task/<tid>`` for a thread.

    Returns:
        The link target of ``/proc/<task>/ns/net``.
    """
    return os.readlink(f"/proc/{task}/ns/net")


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):  # Python 3.12+
        os.unshare(flags)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _map_own_ids_to_themselves() -> None:
    # A new user namespace starts with no uid mapping (everything shows as
    # the overflow uid); map ours to itself so file ownership and geteuid()
    # look as before. setgroups must be denied before an unprivileged
    # process may write a gid_map (user_namespaces(7)).
    uid, gid = os.geteuid(), os.getegid()
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")


def _bring_loopback_up() -> None:
    # An ioctl rather than `ip link set lo up`: without root, a program we
    # exec would not keep the capabilities the user namespace gave us.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ_FLAGS.pack(b"lo", 0)
        _, flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, request))
        fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(b"lo", flags | IFF_UP))


def _enter_namespace(flags: int) -> None:
    _unshare(flags)
    if flags & CLONE_NEWUSER:
        _map_own_ids_to_themselves()
    _bring_loopback_up()


def _works_in_a_child(flags: int) -> str | None:
    """Try :func:`_enter_namespace` in a forked child; ``None`` if it worked,
    else why not."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        message = b"the trial process ended early"
        try:
            os.close(read_end)
            _enter_namespace(flags)
            message = b"ok"
        except BaseException as exc:
            message = repr(exc).encode()
        finally:
            os.write(write_end, message)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return None if message == b"ok" else message.decode(errors="replace")


def isolate() -> Isolation:
    """Move this process into a fresh network namespace with only loopback.

    Call once, before any thread is started: a network namespace is a
    property of each thread, and a thread already running would stay outside.

    Returns:
        What was done, for the report header and the guard test; later calls
        return the first call's answer.
    """
    global _session
    if _session is None:
        _session = _isolate()
    return _session


def _isolate() -> Isolation:
    if sys.platform != "linux":
        return Isolation(
            False, f"not isolated: network namespaces need Linux ({sys.platform})", None
        )
    outside = network_namespace_id()
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        return Isolation(
            False,
            f"not isolated: {len(threads)} threads were running before isolation",
            outside,
        )
    attempts = [(CLONE_NEWUSER | CLONE_NEWNET, "user and network namespaces")]
    if os.geteuid() == 0:
        attempts.insert(0, (CLONE_NEWNET, "a network namespace"))
    reasons = []
    for flags, what in attempts:
        reason = _works_in_a_child(flags)
        if reason is None:
            _enter_namespace(flags)
            inside = network_namespace_id()
            return Isolation(
                True, f"isolated: {what} of its own, only loopback ({inside})", outside
            )
        reasons.append(f"{what}: {reason}")
    return Isolation(False, f"not isolated: {'; '.join(reasons)}", outside)


class LeavesTheMachine(RuntimeError):
    """Raised by the fallback guard for a lookup or a packet that could leave
    the machine."""


def _literal(host: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return None
    try:
        return ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return None


def _guard(event: str, args: tuple[object, ...]) -> None:
    if event == "socket.getaddrinfo":
        host = args[0]
        # No host, an empty one (a wildcard bind) or a literal: nothing is
        # looked up.
        if host not in (None, "", b"") and _literal(host) is None:
            raise LeavesTheMachine(
                f"looked up {host!r} outside a namespace of its own: use the "
                f"lab's getaddrinfo or a netns"
            )
    elif event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        raise LeavesTheMachine(f"{event}({args[0]!r}) can reach DNS")
    elif event in ("socket.connect", "socket.sendto"):
        address = args[1]
        if isinstance(address, tuple):  # not a Unix socket's path
            literal = _literal(address[0])
            if literal is None or not (literal.is_loopback or literal.is_unspecified):
                raise LeavesTheMachine(f"{event} to {address!r}, off loopback")


def install_guard() -> None:
    """Refuse, in this process, lookups of names and traffic off loopback (the
    fallback when :func:`isolate` could not isolate the session)."""
    sys.addaudithook(_guard)
