"""Readers of Linux's /proc and of the kernel's sock_diag netlink interface.

Each function reads one thing and returns plain values or a small dataclass; None (or an empty answer)
when the process is gone. Nothing here decides what a process means or names a metric: the exporter's
process collector does that. Where /proc does not exist (`PROC_STAT` is False) callers use psutil.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

PROC = Path("/proc")
PROC_STAT = Path("/proc/self/stat").exists()  # Linux; elsewhere psutil reads the same figures
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if PROC_STAT else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if PROC_STAT else 4096


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie: a crashed server its parent has not reaped yet is gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def read_pidfile(path: Path) -> int | None:
    """The pid a pidfile names, None when it is missing, unreadable or holds no pid."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def read_cmdline(pid: int) -> str | None:
    """The command line as one string: "" for kernel threads, zombies and a process in the middle of exec,
    None for a process gone or unreadable."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def read_cwd(pid: int) -> str | None:
    """The process's working directory (symlinks resolved), None for a process gone or another user's."""
    if not PROC_STAT:
        try:
            return psutil.Process(pid).cwd() or None
        except psutil.Error:
            return None
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


PF_KTHREAD = 0x00200000  # /proc/PID/stat flags (field 9): a kernel thread, whose command line is always empty


def in_exec(pid: int) -> bool:
    """A user process with an empty command line: inside execve, past closing its close-on-exec files (so its
    parent saw the exec succeed) but before the new program's arguments are in place."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] not in (b"Z", b"X") and not int(fields[6]) & PF_KTHREAD and read_cmdline(pid) == ""


@dataclass(frozen=True)
class Stat:
    """What a scrape needs of a process, from the one read of /proc/PID/stat (psutil reads five files
    for it, and builds a second Process to tell whether the pid was reused)."""
    gone: bool  # a zombie (Z) or dying (X): exited, whatever its parent has not reaped yet
    start_ticks: int
    user: float  # CPU seconds
    system: float
    threads: int
    vms: int  # bytes
    rss: int


def read_stat(pid: int) -> Stat | None:
    """/proc/PID/stat (proc(5)), None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: the fields after it follow the last ")".
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); utime 14, stime 15, num_threads 20, starttime 22, vsize 23, rss 24.
    return Stat(gone=fields[0] in (b"Z", b"X"), start_ticks=int(fields[19]), user=int(fields[11]) / CLOCK_TICKS,
                system=int(fields[12]) / CLOCK_TICKS, threads=int(fields[17]), vms=int(fields[20]),
                rss=int(fields[21]) * PAGE_SIZE)


@dataclass(frozen=True)
class FdCounts:
    """A process's fd table, counted in one pass."""
    open: int
    sockets: int
    to_path: int  # fds open on the one file asked about


def count_fds(pid: int, path: str) -> FdCounts | None:
    """Open fds, sockets and fds open on `path` (a real path) from /proc/PID/fd, None when it cannot be
    listed (another user's process, or gone)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    sockets = to_path = 0
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue  # closed between listdir and readlink
        if target.startswith("socket:"):
            sockets += 1
        elif target == path:
            to_path += 1
    return FdCounts(open=len(fds), sockets=sockets, to_path=to_path)


def is_process(pid: int) -> bool:
    """A process rather than one of its threads (/proc/TID answers too): its thread-group id is its pid."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1]) == pid
    except (OSError, ValueError, IndexError):
        pass
    return False


def listed_pids() -> set[int]:
    """Every process (/proc lists thread-group leaders only)."""
    return {int(name) for name in os.listdir(PROC) if name.isdigit()}


def read_last_pid() -> int:
    """The pid the kernel handed out last (the last field of /proc/loadavg)."""
    with open(PROC / "loadavg", "rb") as handle:
        return int(handle.read().split()[-1])


def loadavg_counts_our_pids() -> bool:
    """Whether /proc/loadavg's last pid is this pid namespace's: gVisor writes 0 there, and a container's
    /proc/loadavg from lxcfs may be the host's."""
    try:
        before = read_last_pid()
        thread = threading.Thread(target=lambda: None, name="pid-probe")
        thread.start()
        thread.join()
        return before < thread.native_id <= read_last_pid()
    except (OSError, ValueError, IndexError, RuntimeError):
        return False


def started_within(pids: set[int], seconds: float) -> set[int]:
    """Those of `pids` whose process started in the last `seconds` (/proc/PID/stat counts from boot; the
    boot-time clock, unlike /proc/uptime, is not a container's own under lxcfs)."""
    uptime = time.clock_gettime(time.CLOCK_BOOTTIME)
    stats = ((pid, read_stat(pid)) for pid in pids)
    return {pid for pid, stat in stats if stat and uptime - stat.start_ticks / CLOCK_TICKS <= seconds}


# sock_diag (linux/inet_diag.h): dump the TCP sockets in state LISTEN of one address family.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST_DUMP = 0x1 | 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10
NLMSG_HEADER = struct.Struct("=IHHII")
SOCKID_LENGTH = 48  # inet_diag_sockid: ports, addresses, interface, cookie
SPORT_OFFSET = NLMSG_HEADER.size + 4  # inet_diag_msg: family, state, timer, retrans, then the source port
NETLINK_TIMEOUT_SECONDS = 1.0  # the kernel answers at once; never hang a caller on it


def listening_ports() -> set[int]:
    """Ports with a listening TCP socket (IPv4 and IPv6), from the kernel's sock_diag interface.

    Raises TimeoutError when the kernel does not answer in time, another OSError (or AttributeError where
    there is no AF_NETLINK, struct.error on a short answer) when it refuses.
    """
    ports = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(NETLINK_TIMEOUT_SECONDS)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            request = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN) + bytes(SOCKID_LENGTH)
            sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY,
                                        NLM_F_REQUEST_DUMP, seq, 0) + request)
            done = False
            while not done:
                data = sock.recv(65536)
                offset = 0
                while offset < len(data):
                    length, kind = struct.unpack_from("=IH", data, offset)
                    if kind == NLMSG_DONE:
                        done = True
                        break
                    if kind == NLMSG_ERROR or length < NLMSG_HEADER.size:
                        raise OSError("sock_diag answered with an error")
                    ports.add(struct.unpack_from(">H", data, offset + SPORT_OFFSET)[0])
                    offset += (length + 3) & ~3
    return ports
