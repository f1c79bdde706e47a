"""`make deps`: the system programs the stack and the tests use, installed where this machine allows it.

    python3 stack/deps.py                 # install what is missing, or print the one line that would
    python3 stack/deps.py --strict        # the same, but exit 1 while anything is still missing (CI)
    python3 stack/deps.py stop-daemons    # stop the daemons Debian's packages start (CI; nothing else uses them)

Debian/Ubuntu: apt-get as root or through passwordless sudo (`sudo -n true`). macOS: Homebrew. Anywhere
else, or without the rights, it prints the exact command and exits 0, so `make test` still runs and the
tests that need a missing program skip with that command as the reason (tests/conftest.py `requires`).
Standard library only: it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Program:
    command: str                   # the name tests ask for: requires("prometheus")
    apt: str                       # its Debian/Ubuntu package
    brew: str | None               # its Homebrew formula, "--cask NAME" for a cask; None when there is none
    aliases: tuple[str, ...] = ()  # other names the same program has on PATH


PROGRAMS = (
    Program("prometheus", "prometheus", "prometheus"),
    Program("promtool", "prometheus", "prometheus"),
    Program("prometheus-alertmanager", "prometheus-alertmanager", "alertmanager", ("alertmanager",)),
    Program("amtool", "prometheus-alertmanager", "alertmanager"),
    Program("docker-compose", "docker-compose", "docker-compose"),
    Program("prometheus-node-exporter", "prometheus-node-exporter", "node_exporter", ("node_exporter",)),
    Program("prometheus-process-exporter", "prometheus-process-exporter", None),
    Program("mtail", "mtail", None),
    Program("logrotate", "logrotate", "logrotate"),
    Program("sqlite3", "sqlite3", "sqlite"),
    Program("pgrep", "procps", None),  # part of macOS itself
    Program("openssl", "openssl", "openssl"),
    Program("systemd-analyze", "systemd", None),
    Program("chromium", "chromium", "--cask chromium", ("chromium-browser",)),
    Program("chromedriver", "chromium-driver", "--cask chromedriver"),
    Program("node", "nodejs", "node"),  # the tests' stand-in for the public build's start-up crash
)
BY_COMMAND = {program.command: program for program in PROGRAMS}
# Packages whose install starts a daemon on the stack's or the tests' ports (where an init system runs).
DAEMONS = ("prometheus", "prometheus-alertmanager", "prometheus-node-exporter", "prometheus-process-exporter")


def find(command: str) -> str | None:
    """The path of a program from PROGRAMS under any of its names, or None."""
    program = BY_COMMAND[command]
    return next(filter(None, (shutil.which(name) for name in (program.command, *program.aliases))), None)


def missing(commands=None) -> list[Program]:
    return [BY_COMMAND[c] for c in (commands or BY_COMMAND) if find(c) is None]


def package_manager() -> str | None:
    if sys.platform == "darwin":
        return "brew"
    if sys.platform.startswith("linux") and shutil.which("apt-get"):
        return "apt"
    return None


def can_install(manager: str | None) -> bool:
    """True when the install runs without asking anyone for anything."""
    if manager == "brew":
        return shutil.which("brew") is not None
    if manager == "apt":
        return os.geteuid() == 0 or _passwordless_sudo()
    return False


def _passwordless_sudo() -> bool:
    if shutil.which("sudo") is None:
        return False
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _sudo() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo"]


def _brew_commands(programs: list[Program]) -> list[list[str]]:
    formulae = dict.fromkeys(p.brew for p in programs if p.brew and not p.brew.startswith("--cask "))
    casks = dict.fromkeys(p.brew.removeprefix("--cask ") for p in programs if p.brew and p.brew.startswith("--cask "))
    return ([["brew", "install", *formulae]] if formulae else []) + \
        ([["brew", "install", "--cask", *casks]] if casks else [])


def install_command(programs: list[Program], manager: str | None = None) -> str:
    """The one line that installs `programs` here (or, on an unknown system, on Debian/Ubuntu)."""
    manager = manager or package_manager()
    if manager == "brew":
        line = " && ".join(" ".join(command) for command in _brew_commands(programs))
        without = [p.command for p in programs if p.brew is None]
        return (line or "nothing Homebrew can install") + \
            (f"  (no Homebrew package for {', '.join(without)}: Linux only)" if without else "")
    packages = dict.fromkeys(p.apt for p in programs)
    line = " ".join([*_sudo(), "apt-get", "install", "-y", "--no-install-recommends", *packages])
    return line if manager == "apt" else f"on Debian/Ubuntu: {line}"


def install(programs: list[Program], manager: str) -> bool:
    """Run the package manager for `programs`; True when it succeeded."""
    if manager == "brew":
        commands = _brew_commands(programs)
    else:
        # A fresh machine often has no package lists yet, and unattended-upgrades may hold the lock a while.
        apt = [*_sudo(), "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-o", "DPkg::Lock::Timeout=300"]
        commands = [apt + ["update", "-qq"],
                    apt + ["install", "-y", "-qq", "--no-install-recommends", *dict.fromkeys(p.apt for p in programs)]]
    for command in commands:
        print("+ " + " ".join(command), flush=True)
        # apt's progress goes nowhere (its errors still show); Homebrew's is the only sign of life.
        if subprocess.run(command, stdout=None if manager == "brew" else subprocess.DEVNULL).returncode != 0:
            return False
    return True


def stop_daemons(packages) -> list[str]:
    """Stop the daemons of these packages (under systemd also disable them); returns the ones that ran."""
    systemd = Path("/run/systemd/system").is_dir()
    stopped = []
    for name in (p for p in DAEMONS if p in packages):
        if systemd:
            status, stop = ["systemctl", "is-active", "--quiet", name], ["systemctl", "disable", "--now", name]
        elif Path("/etc/init.d", name).exists():
            status, stop = ["service", name, "status"], ["service", name, "stop"]
        else:
            continue
        running = subprocess.run(status, capture_output=True).returncode == 0
        if subprocess.run([*_sudo(), *stop], capture_output=True).returncode == 0 and running:
            stopped.append(name)
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="install", choices=("install", "stop-daemons"))
    parser.add_argument("--strict", action="store_true", help="exit 1 while anything is still missing")
    args = parser.parse_args(argv)
    if args.action == "stop-daemons":
        stopped = stop_daemons(DAEMONS)
        print(f"deps: stopped {', '.join(stopped)}." if stopped else "deps: no packaged daemon was running.")
        return 0

    needed = missing()
    if not needed:
        print(f"deps: all {len(PROGRAMS)} system programs are installed.")
        return 0
    manager = package_manager()
    names = ", ".join(p.command for p in needed)
    if can_install(manager):
        print(f"deps: installing {names}.", flush=True)
        installed = install(needed, manager)
        if installed and manager == "apt":
            stopped = stop_daemons({p.apt for p in needed})
            if stopped:
                print(f"deps: stopped and disabled the daemons Debian started ({', '.join(stopped)}): the stack "
                      "and the tests start their own on their own ports.")
        needed = missing()
        if not needed:
            return 0
        names = ", ".join(p.command for p in needed)
        reason = "the install failed" if not installed else "still not on PATH after the install"
    else:
        reason = {"apt": "no root and no passwordless sudo", "brew": "Homebrew is not installed (https://brew.sh)",
                  None: "no apt-get or Homebrew here"}[manager]
    print(f"deps: missing {names} ({reason}). Install with:\n  {install_command(needed, manager)}\n"
          "Until then the stack skips what it cannot start and the tests that need them skip.")
    return 1 if args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
