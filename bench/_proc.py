"""What the benchmark reads from /proc: RSS and CPU time of a process, Dovecot's processes,
and the server side of IMAP connections. Linux only."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile ... of /proc/PID/status, in KiB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key] = int(parts[0])
    return out


def rss_kib(pid: int) -> int:
    return status_kib(pid)["VmRSS"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of all threads of the process."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def dovecot_processes() -> dict[str, tuple[int, int, int]]:
    """Per Dovecot process kind (imap, imap-login, imap-hibernate, ...): (count, total RSS KiB,
    most open fds in one process of that kind)."""
    out: dict[str, tuple[int, int, int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if not cmd.startswith("dovecot"):
                continue
            kind = cmd.split("/", 1)[1].split()[0] if "/" in cmd else "master"
            rss = rss_kib(int(p.name))
            fds = len(os.listdir(p / "fd"))
        except (OSError, KeyError, IndexError):
            continue
        n, total, most = out.get(kind, (0, 0, 0))
        out[kind] = (n + 1, total + rss, max(most, fds))
    return out


def server_connections(ports: tuple[int, ...]) -> int:
    """Sockets (not listening) whose local port is one of `ports`: the server side of IMAP
    connections, including ones the client already closed that Dovecot has not released yet."""
    n = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local_port = int(f[1].rsplit(":", 1)[1], 16)
            if local_port in ports and f[3] != "0A":  # 0A = LISTEN
                n += 1
    return n


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_in_use() -> int:
    """Bytes glibc malloc has handed out and not got back (heap + mmapped chunks) in this
    process. Python's small-object arenas are mmapped directly and are not included."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    mi = libc.mallinfo2()
    return int(mi.uordblks + mi.hblkhd)


def malloc_trim() -> None:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
