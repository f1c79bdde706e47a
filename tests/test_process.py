"""The process collector against real child processes."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import psutil
import pytest
from conftest import ROOT, Exporter, free_port, wait_for_http, wait_until

from devflow_monitor.core import catalog
from devflow_monitor.core import procfs
from devflow_monitor.core.config import DEFAULT_PROCESS_PATTERN, Config
from devflow_monitor.core.procfs import loadavg_counts_our_pids
from devflow_monitor.exporter.collectors import process_finder
from devflow_monitor.exporter.collectors.process import ProcessCollector

SLEEP = "import sys, time; time.sleep(120)"
needs_pid_cursor = pytest.mark.skipif(not loadavg_counts_our_pids(),
                                      reason="/proc/loadavg does not count this pid namespace's pids here")


@pytest.fixture
def fake():
    """A stand-in for `node /opt/<unique>/server/index.js`, and the pattern that finds it and nothing
    else on the machine (a real DevFlow or another test's servers)."""
    install = f"/opt/devflow-test-{os.getpid()}-{time.monotonic_ns()}"
    server = [sys.executable, "-c", SLEEP, "node", f"{install}/server/index.js"]
    return server, re.escape(install) + r"/server/index\.js"


def test_the_default_pattern_finds_the_server_by_its_command_line(fake):
    server, _ = fake
    assert re.search(DEFAULT_PROCESS_PATTERN, " ".join(server))
    assert not re.search(DEFAULT_PROCESS_PATTERN, "node /opt/devflow/client/index.js")


def fake_server_holding(db: str, port: int) -> list[str]:
    """A fake server that holds the database open and listens on `port`, like the real one would."""
    code = ("import socket, sqlite3, sys, time\n"
            f"conn = sqlite3.connect({db!r}); conn.execute('SELECT 1').fetchall()\n"
            "server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"server.bind(('127.0.0.1', {port})); server.listen()\n"
            "print('ready', flush=True); time.sleep(120)\n")
    return [sys.executable, "-c", code]


def up(exporter) -> float | None:
    return exporter.value(catalog.PROCESS_UP.name)


def test_absent_started_restarted_and_several_targets(tmp_path, start_exporter, spawn, fake):
    command, pattern = fake
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", pattern)
    samples = exporter.scrape()
    assert samples[(catalog.PROCESS_UP.name, ())] == 0
    assert samples[(catalog.PROCESS_MATCHES.name, ())] == 0
    assert (catalog.PROCESS_CPU.name, (("mode", "user"),)) not in samples

    first = spawn(command)
    wait_until(lambda: up(exporter) == 1, message="target found")
    samples = exporter.scrape()
    assert samples[(catalog.PROCESS_START_TIME.name, ())] == psutil.Process(first.pid).create_time()
    cpu_before = samples[(catalog.PROCESS_CPU.name, (("mode", "user"),))]
    cpu_after = exporter.value(catalog.PROCESS_CPU.name, mode="user")
    assert cpu_after >= cpu_before

    first.kill()
    first.wait()
    assert up(exporter) == 0, "a dead target must not be reported from a cache"
    second = spawn(command)
    wait_until(lambda: up(exporter) == 1, message="restarted target found")
    samples = exporter.scrape()
    assert samples[(catalog.PROCESS_START_TIME.name, ())] == psutil.Process(second.pid).create_time()
    # One series per metric, whatever the PID: nothing stale, nothing doubled.
    assert len([key for key in samples if key[0] == catalog.PROCESS_RSS.name]) == 1

    third = spawn(command)
    fourth = spawn(command)
    wait_until(lambda: exporter.value(catalog.PROCESS_MATCHES.name) == 3, message="three matches")
    samples = exporter.scrape()
    assert samples[(catalog.PROCESS_START_TIME.name, ())] == psutil.Process(second.pid).create_time(), \
        "the oldest match is the one reported"
    assert len([key for key in samples if key[0] == catalog.PROCESS_THREADS.name]) == 1
    for proc in (second, third, fourth):
        proc.kill()
        proc.wait()
    wait_until(lambda: up(exporter) == 0 and exporter.value(catalog.PROCESS_MATCHES.name) == 0,
               message="all gone")


def test_a_start_and_a_restart_show_on_the_next_scrape_whatever_the_background_pace(tmp_path, start_exporter,
                                                                                      spawn, fake):
    """With the background look an hour away, only the scrape itself can find them."""
    command, pattern = fake
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern",
                              pattern, settings={"collectors": {"process": {"scan_interval_seconds": 3600}}})
    assert up(exporter) == 0
    first = spawn(command)  # Popen returns after the exec: the command line is the server's
    assert up(exporter) == 1
    first.kill()
    first.wait()
    assert up(exporter) == 0
    second = spawn(command)
    assert exporter.value(catalog.PROCESS_START_TIME.name) == psutil.Process(second.pid).create_time()


def test_pidfile_follows_restarts_and_reads_database_handles_and_sockets(tmp_path, start_exporter, spawn, fake):
    command, _ = fake
    db = tmp_path / "devflow.db"
    pidfile = tmp_path / "devflow.pid"
    port = free_port()
    exporter = start_exporter("--devflow.database", str(db), "--devflow.pidfile", str(pidfile),
                              "--devflow.port", str(port))
    assert up(exporter) == 0

    server = spawn(fake_server_holding(str(db), port), stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    pidfile.write_text(f"{server.pid}\n")
    assert up(exporter) == 1, "a pidfile is read on every scrape"
    samples = wait_until(
        lambda: (lambda s: s if s[(catalog.PROCESS_PORT_LISTENING.name, (("port", str(port)),))] == 1 else None)(
            exporter.scrape()), message="port seen listening")
    assert samples[(catalog.DB_CONNECTIONS.name, ())] == 1
    assert samples[(catalog.PROCESS_SOCKETS.name, ())] >= 1
    assert samples[(catalog.PROCESS_OPEN_FDS.name, ())] >= 3

    replacement = spawn(command)
    pidfile.write_text(str(replacement.pid))
    assert exporter.value(catalog.PROCESS_START_TIME.name) == psutil.Process(replacement.pid).create_time()
    pidfile.write_text("not a pid")
    assert up(exporter) == 0


def test_never_matches_itself_its_parent_shell_or_its_children(tmp_path, spawn):
    """The guide's `pgrep -f devflow` finds itself; the exporter must not."""
    port = free_port()
    # A pattern unique to this test, so other devflow processes on the machine cannot match it.
    pattern = f"devflow-{port}"
    command = (f"{sys.executable} -m devflow_monitor.cli serve --web.listen-address 127.0.0.1:{port} "
               f"--devflow.database {tmp_path}/devflow.db --devflow.process-pattern {pattern} "
               "--no-collector.logs --no-collector.probe; true")
    # The shell stays as the exporter's parent, and its command line contains the pattern too.
    shell = spawn(["sh", "-c", command], cwd=ROOT)
    exporter_proc = wait_until(lambda: psutil.Process(shell.pid).children(), message="exporter started")[0]
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/health")
        samples = Exporter(None, url).scrape()
        assert samples[(catalog.PROCESS_MATCHES.name, ())] == 0
        assert samples[(catalog.PROCESS_UP.name, ())] == 0
    finally:
        exporter_proc.terminate()
        exporter_proc.wait(10)


def test_with_a_workdir_only_the_server_running_in_it_or_holding_its_database_is_watched(tmp_path, start_exporter,
                                                                                         spawn, fake):
    """Another project's `node .../server/index.js` matches the same command line."""
    command, pattern = fake
    watched, other = tmp_path / "watched", tmp_path / "other"
    (watched / "data").mkdir(parents=True)
    other.mkdir()
    exporter = start_exporter("--devflow.workdir", str(watched), "--devflow.process-pattern", pattern)
    spawn(command, cwd=other)
    samples = exporter.scrape()  # a scrape that knows no server looks itself: the other one is seen now
    assert samples[(catalog.PROCESS_UP.name, ())] == 0, "a server in another directory is not the watched one"
    assert samples[(catalog.PROCESS_MATCHES.name, ())] == 0

    server = spawn(command, cwd=watched)
    samples = exporter.scrape()
    assert samples[(catalog.PROCESS_START_TIME.name, ())] == psutil.Process(server.pid).create_time()
    wait_until(lambda: exporter.value(catalog.PROCESS_MATCHES.name) == 1, message="a look after both started")
    server.kill()
    server.wait()
    assert up(exporter) == 0, "the other one does not take its place"

    # A server started elsewhere that holds the workdir's database open is the watched one too.
    database = watched / "data" / "devflow.db"
    holder = [sys.executable, "-c", "import sqlite3, sys, time\n"
              "sys.stdin.readline()\n"  # seen by a look before it opens the database, as at a server's start
              f"conn = sqlite3.connect({str(database)!r}); conn.execute('CREATE TABLE t (x)')\n"
              "print('ready', flush=True); time.sleep(120)\n", *command[3:]]
    holding = spawn(holder, cwd=other, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert up(exporter) == 0
    holding.stdin.write("open\n")
    holding.stdin.flush()
    assert holding.stdout.readline().strip() == "ready"
    wait_until(lambda: up(exporter) == 1, message="the server holding the database found")
    assert exporter.value(catalog.PROCESS_START_TIME.name) == psutil.Process(holding.pid).create_time()


def test_port_owner_is_taken_for_the_server_only_when_asked(tmp_path, start_exporter, spawn):
    port = free_port()
    listener = spawn([sys.executable, "-c",
                      "import socket, time\n"
                      f"s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen()\n"
                      "print('ready', flush=True); time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    assert listener.stdout.readline().strip() == "ready"
    flags = ("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.port", str(port),
             "--devflow.process-pattern", "^no process has this command line$")
    # By default another program on the port (a dev server on :3000) is not DevFlow.
    default = start_exporter(*flags)
    wait_until(lambda: default.value(catalog.PROCESS_PORT_LISTENING.name, port=str(port)) == 1,
               message="port seen listening")
    assert up(default) == 0
    asked = start_exporter(*flags, settings={"devflow": {"match_port": True}})
    wait_until(lambda: up(asked) == 1, message="port owner found")
    assert asked.value(catalog.PROCESS_START_TIME.name) == psutil.Process(listener.pid).create_time()
    with socket.create_connection(("127.0.0.1", port)):
        pass


def test_zombies_and_reused_pids_are_not_the_server(tmp_path, start_exporter, spawn, fake):
    command, _ = fake
    pidfile = tmp_path / "devflow.pid"
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.pidfile", str(pidfile))
    # A server that crashed and that its parent (this test) has not reaped yet.
    crashed = spawn([sys.executable, "-c", "pass"])
    wait_until(lambda: psutil.Process(crashed.pid).status() == psutil.STATUS_ZOMBIE, message="zombie")
    pidfile.write_text(str(crashed.pid))
    assert up(exporter) == 0
    # A live process whose PID a stale pidfile happens to name: it started after the file was written.
    stranger = spawn(command)
    pidfile.write_text(str(stranger.pid))
    written = psutil.Process(stranger.pid).create_time() - 60
    os.utime(pidfile, (written, written))
    assert up(exporter) == 0
    pidfile.write_text(str(stranger.pid))
    assert up(exporter) == 1


def test_a_process_that_becomes_the_server_after_it_was_first_seen_is_found(tmp_path, start_exporter, spawn, fake):
    """Command lines are read once per new process; a fork that execs the server later, as a wrapper
    script does, is looked at again."""
    server, pattern = fake
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", pattern)
    install = server[-1].removesuffix("/server/index.js")
    # The shell's own command line does not match: the path is only put together when it execs.
    wrapper = spawn(["sh", "-c", f'sleep 1; exec {shlex.join(server[:-1])} "$0/server/index.js"', install])
    wait_until(lambda: up(exporter) == 1, message="the exec'd server found")
    assert exporter.value(catalog.PROCESS_START_TIME.name) == psutil.Process(wrapper.pid).create_time()


def test_a_live_server_is_watched_without_reading_every_command_line(tmp_path, start_exporter, spawn, fake):
    """With the server found, a few seconds without scrapes cost fewer reads than one look at every
    process."""
    server, pattern = fake
    spawn(server)
    exporter = start_exporter("--devflow.database", str(tmp_path / "devflow.db"), "--devflow.process-pattern", pattern,
                              "--no-collector.database", "--no-collector.eventqueue", "--no-collector.host")
    wait_until(lambda: up(exporter) == 1, message="server found")
    io = psutil.Process(exporter.proc.pid)
    before = io.io_counters().read_count
    time.sleep(2)  # ten scan intervals in tests
    reads = io.io_counters().read_count - before
    assert reads < len(psutil.pids()), f"{reads} reads while watching a live server"


def test_one_read_of_proc_stat_says_what_psutil_says(tmp_path, spawn):
    # A command name with a space and parentheses, as field 2 of /proc/PID/stat shows it.
    odd = tmp_path / "dev flow) (x"
    odd.symlink_to(sys.executable)
    child = spawn([str(odd), "-c", "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
                   "sum(range(10**7)); print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"  # busy a while, then still: nothing changes between the reads
    proc = psutil.Process(child.pid)
    stat = procfs.read_stat(child.pid)
    with proc.oneshot():
        cpu, memory = proc.cpu_times(), proc.memory_info()
        assert (stat.user, stat.system, stat.threads) == (cpu.user, cpu.system, proc.num_threads())
        assert stat.vms == memory.vms
        # psutil reads /proc/PID/statm; stat's rss field (what Prometheus' own process collectors read) is
        # summed from the kernel's per-thread counters and lags it by a few pages.
        assert abs(stat.rss - memory.rss) < 2 ** 20
        # psutil's create_time is the boot time plus the same start ticks.
        assert stat.start_ticks / os.sysconf("SC_CLK_TCK") + psutil.boot_time() == pytest.approx(proc.create_time(),
                                                                                               abs=0.01)
    assert not stat.gone
    child.kill()
    wait_until(lambda: procfs.read_stat(child.pid).gone, message="exited, not reaped yet: a zombie")
    child.wait()
    assert procfs.read_stat(child.pid) is None


@pytest.mark.parametrize("pid_cursor", [pytest.param(True, marks=needs_pid_cursor), False],
                         ids=["/proc/loadavg", "/proc listed"])
def test_a_look_costs_the_same_whatever_the_number_of_old_processes(monkeypatch, spawn, pid_cursor):
    """Reading every command line costs 1.4 ms with 2,000 idle processes on the machine, 0.05 ms with 66:
    a look reads only those of processes it has not read yet, and, where /proc/loadavg tells the new
    pids, does not list /proc either."""
    monkeypatch.setattr(process_finder, "PROBE_LIMIT", 10_000)  # others may fork too while the test spawns
    reads, listings = [], []
    read_cmdline, listed_pids = procfs.read_cmdline, procfs.listed_pids
    monkeypatch.setattr(procfs, "read_cmdline", lambda pid: reads.append(pid) or read_cmdline(pid))
    monkeypatch.setattr(procfs, "listed_pids", lambda: listings.append(1) or listed_pids())
    finder = process_finder.ProcessFinder(None, "^no process has this command line$", free_port())
    scan = process_finder.IncrementalScan(finder, pid_cursor=pid_cursor)
    scan.scan()
    assert listings and len(reads) >= len(psutil.pids()) - 5, "the first look reads every process"
    idle = [spawn(["sleep", "120"]) for _ in range(200)]
    reads.clear()
    listings.clear()
    scan.scan()
    assert {p.pid for p in idle} <= set(reads), "new processes are read"
    monkeypatch.setattr(process_finder, "YOUNG_SECONDS", 0.0)
    scan.scan()  # the young ones' last read
    reads.clear()
    listings.clear()
    scan.scan()
    assert bool(listings) != pid_cursor
    assert len(reads) < len(idle) // 2, f"{len(reads)} command lines read once the {len(idle)} processes are old"


def test_loadavg_is_not_taken_for_a_pid_cursor_where_it_counts_no_pids_of_ours(monkeypatch, tmp_path):
    """gVisor writes 0 as the last pid; lxcfs may show the host's."""
    monkeypatch.setattr(procfs, "PROC", tmp_path)
    for last in ("0", "4000000"):
        (tmp_path / "loadavg").write_text(f"0.00 0.01 0.05 1/78 {last}\n")
        assert not procfs.loadavg_counts_our_pids()
    (tmp_path / "loadavg").unlink()
    assert not procfs.loadavg_counts_our_pids()


@needs_pid_cursor
@pytest.mark.parametrize("unread, full", [("", False), (None, False), (None, True)],
                         ids=["in the middle of exec", "not in /proc yet", "not in /proc yet at the hourly look"])
def test_a_server_whose_pid_was_counted_before_proc_showed_it_is_found(monkeypatch, fake, spawn, unread, full):
    """The kernel counts a pid a moment before /proc lists its process, and a process in the middle of
    exec has no command line: such a pid is read again at the next look rather than dropped."""
    scan, child = a_look_then_a_new_server(fake, spawn, pid_cursor=True)
    read_cmdline, listed_pids = procfs.read_cmdline, procfs.listed_pids
    monkeypatch.setattr(procfs, "read_cmdline", lambda pid: unread if pid == child.pid else read_cmdline(pid))
    monkeypatch.setattr(procfs, "listed_pids", lambda: listed_pids() - {child.pid})
    if full:
        scan.full_at -= process_finder.FULL_SCAN_SECONDS + 1
    assert scan.scan() == [], "not seen yet"
    monkeypatch.setattr(procfs, "read_cmdline", read_cmdline)
    monkeypatch.setattr(procfs, "listed_pids", listed_pids)
    assert [t.pid for t in scan.scan()] == [child.pid]


@pytest.mark.parametrize("pid_cursor", [pytest.param(True, marks=needs_pid_cursor), False],
                         ids=["/proc/loadavg", "/proc listed"])
def test_a_process_that_execs_the_server_just_after_the_exporter_started_is_found(fake, spawn, pid_cursor):
    """At the first look every process is young: one forked before it may exec the server after it."""
    server, pattern = fake
    finder = finder_of_children(pattern)
    # The wrapper's own command line must not match: the server's path is joined only when it execs.
    install, script = server[-1].split("/server/")
    wrapper = spawn([sys.executable, "-c", "import os, sys\nsys.stdin.readline()\n"
                     f"os.execv(sys.executable, {server[:-1]!r} + [{install!r} + '/server/' + {script!r}])"],
                    stdin=subprocess.PIPE, text=True)
    wait_until(lambda: psutil.Process(wrapper.pid).cmdline()[:2] == [sys.executable, "-c"], message="forked")
    scan = process_finder.IncrementalScan(finder, pid_cursor)
    assert scan.scan() == []
    wrapper.stdin.write("exec\n")
    wrapper.stdin.flush()
    wait_until(lambda: pattern_matches(pattern, wrapper.pid), message="the wrapper has exec'd the server")
    assert [t.pid for t in scan.scan()] == [wrapper.pid]


def test_a_server_caught_inside_exec_is_found_by_the_same_look(monkeypatch, spawn, fake):
    """Popen returns once the child closed its close-on-exec files, a moment before the kernel puts the new
    program's arguments in place: a look then reads an empty command line, and reads it again."""
    scan, child = a_look_then_a_new_server(fake, spawn, pid_cursor=False)
    empty_reads = [3]  # how many more reads of the child see it inside execve
    real_read = process_finder.procfs.read_cmdline

    def read_cmdline(pid):
        if pid == child.pid and empty_reads[0]:
            empty_reads[0] -= 1
            return ""
        return real_read(pid)

    monkeypatch.setattr(process_finder.procfs, "read_cmdline", read_cmdline)
    monkeypatch.setattr(process_finder.procfs, "in_exec", lambda pid: pid == child.pid)  # until it matches
    assert [t.pid for t in scan.scan()] == [child.pid]
    assert empty_reads == [0]


def a_look_then_a_new_server(fake, spawn, pid_cursor: bool):
    """A scan that has looked once and found nothing, and a server started after that look."""
    server, pattern = fake
    scan = process_finder.IncrementalScan(finder_of_children(pattern), pid_cursor)
    assert scan.scan() == []
    child = spawn(server)
    wait_until(lambda: pattern_matches(pattern, child.pid), message="the server has exec'd")
    return scan, child


def finder_of_children(pattern: str):
    """A finder that takes this test's children for servers: only the scan is under test."""
    finder = process_finder.ProcessFinder(None, pattern, free_port())
    finder.is_own = lambda pid: False
    return finder


def pattern_matches(pattern: str, pid: int) -> bool:
    return bool(re.search(pattern, " ".join(psutil.Process(pid).cmdline())))


@pytest.mark.parametrize("probe_limit, pid_cursor", [pytest.param(512, True, marks=needs_pid_cursor),
                                                     pytest.param(0, True, marks=needs_pid_cursor), (512, False)],
                         ids=["new pids taken whole", "new pids picked from /proc", "no /proc/loadavg cursor"])
def test_a_new_server_is_found_once_whatever_its_threads(monkeypatch, spawn, fake, probe_limit, pid_cursor):
    """Threads share the pid space and /proc/TID shows the process's command line: not more servers."""
    monkeypatch.setattr(process_finder, "PROBE_LIMIT", probe_limit)
    server, pattern = fake
    finder = finder_of_children(pattern)
    scan = process_finder.IncrementalScan(finder, pid_cursor)
    assert scan.scan() == []
    threaded = [server[0], "-c", "import threading, time\n"
                "for _ in range(8): threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
                "print('ready', flush=True); time.sleep(120)\n", *server[3:]]
    child = spawn(threaded, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    assert [t.pid for t in scan.scan()] == [child.pid]
    assert psutil.Process(child.pid).num_threads() == 9


def test_new_pids_wrap_at_pid_max():
    """After pid_max the kernel starts again at 300; new pids are then picked from /proc."""
    new_pids = process_finder.new_pids
    assert new_pids(100, 105) == {101, 102, 103, 104, 105}
    assert new_pids(100, 100) == set()
    listing = {1, 2, 250, 301, 302, 400, 5000, 32760, 32761, 32767}
    # The 16 newest are taken whether listed or not: /proc shows a process a moment after its pid is counted.
    assert new_pids(32760, 302, listing) == {32761, 32767} | set(range(300, 303))
    assert new_pids(100, 5000, listing) == {250, 301, 302, 400} | set(range(4985, 5001))


def collector_for(tmp_path, pattern: str, scan_interval: float, pidfile: str | None = None) -> ProcessCollector:
    """A process collector in this test's process, whose children it may take for servers."""
    config = Config()
    config.devflow.database = str(tmp_path / "devflow.db")
    config.devflow.process_pattern = pattern
    config.devflow.pidfile = pidfile
    config.collectors.process.scan_interval_seconds = scan_interval
    collector = ProcessCollector(config)
    collector.finder.is_own = lambda pid: False
    return collector


def scrape_up(collector: ProcessCollector) -> float:
    families = {family.name: family for family in collector.collect()}
    return families[catalog.PROCESS_UP.name].samples[0].value


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


@pytest.mark.parametrize("server_running", [False, True], ids=["no server", "a known server"])
def test_a_scrape_does_not_wait_for_a_background_look_stuck_reading_proc(monkeypatch, tmp_path, spawn, fake,
                                                                         server_running):
    server, pattern = fake
    if server_running:
        spawn(server)
    collector = collector_for(tmp_path, pattern, scan_interval=0.05)
    collector.start()
    stuck, release = threading.Event(), threading.Event()
    try:
        assert scrape_up(collector) == float(server_running)
        read_cmdline = procfs.read_cmdline

        def stuck_read(pid):
            stuck.set()
            release.wait(30)
            return read_cmdline(pid)

        monkeypatch.setattr(process_finder, "FULL_SCAN_SECONDS", -1.0)  # every look reads every command line
        monkeypatch.setattr(procfs, "read_cmdline", stuck_read)
        assert stuck.wait(10), "the background look reached its read of every command line"
        # The look stays stuck until `release` is set, after the scrape.
        scraped: list[float] = []
        scrape = threading.Thread(target=lambda: scraped.append(scrape_up(collector)), daemon=True)
        scrape.start()
        scrape.join(10)
        assert not release.is_set()
        assert scraped == [float(server_running)], "the scrape waited for the look"
    finally:
        release.set()
        collector.stop()


def test_start_twice_runs_one_look_thread_and_a_start_after_stop_looks_again(tmp_path, fake):
    _, pattern = fake
    collector = collector_for(tmp_path, pattern, scan_interval=3600)  # no background look during the test
    looks = []
    scan = collector._scanner.scan
    collector._scanner.scan = lambda: looks.append(1) or scan()
    try:
        collector.start()
        collector.start()
        assert len(threads_named("process-scan")) == 1
        assert len(looks) == 1, "a start looks once before the first scrape"
        collector.stop()
        assert threads_named("process-scan") == [], "a stop wakes the sleeping look and ends it"
        collector.start()
        assert len(threads_named("process-scan")) == 1
        assert len(looks) == 2, "a start after a stop looks again"
    finally:
        collector.stop()
    assert threads_named("process-scan") == []


def test_with_a_pidfile_nothing_runs_between_scrapes(tmp_path, fake):
    _, pattern = fake
    collector = collector_for(tmp_path, pattern, scan_interval=0.05, pidfile=str(tmp_path / "devflow.pid"))
    collector.start()
    try:
        assert threads_named("process-scan") == []
        assert scrape_up(collector) == 0
    finally:
        collector.stop()


def test_a_netlink_timeout_sends_that_call_to_psutil_and_the_next_to_netlink_again(monkeypatch):
    port = free_port()
    dumps = []

    def dump():
        dumps.append(1)
        if len(dumps) == 1:
            raise TimeoutError("timed out")
        return {port}

    monkeypatch.setattr(procfs, "listening_ports", dump)
    finder = process_finder.ProcessFinder(None, "^no process has this command line$", port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert finder.port_listening(), "psutil answers the call netlink timed out on"
        assert finder.port_listening()
    assert len(dumps) == 2, "the next call asks netlink again"


def test_a_refused_netlink_is_asked_again_after_a_pause(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(process_finder, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    refusals = []

    def refuse():
        refusals.append(1)
        raise PermissionError("no sock_diag in this sandbox")

    monkeypatch.setattr(procfs, "listening_ports", refuse)
    finder = process_finder.ProcessFinder(None, "^no process has this command line$", free_port())
    assert not finder.port_listening()
    clock[0] += process_finder.NETLINK_RETRY_SECONDS - 1
    assert not finder.port_listening()
    assert len(refusals) == 1, "psutil answers during the pause"
    clock[0] += 1
    assert not finder.port_listening()
    assert len(refusals) == 2, "netlink is asked again after the pause"
