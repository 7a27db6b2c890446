"""Processes of the dev stack: ports, child processes, signals and what the launcher says."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from settings import REPO_ROOT, open_private_log


def say(message: str) -> None:
    print(f"[bizsupport] {message}", flush=True)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_ports(ports: dict[str, int]) -> None:
    busy = [
        f"{name} port {port}" for name, port in ports.items() if not port_free("127.0.0.1", port)
    ]
    if busy:
        raise SystemExit(
            f"[bizsupport] cannot start: {', '.join(busy)} already in use "
            "(another `make run`?). Stop it, or set API_PORT for the API."
        )


class Children:
    """Processes this launcher started; stopped in reverse order, only these."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.restartable: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], *, restart: bool = False
    ) -> subprocess.Popen[bytes]:
        proc = self._spawn(name, argv, env)
        self.procs.append((name, proc))
        if restart:
            self.restartable[name] = (argv, env)
        return proc

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open_private_log(self.logs / f"{name}.log")
        return subprocess.Popen(
            argv,
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check(self) -> None:
        """A crashed worker is started again (Temporal resumes its work); others end the stack."""
        for index, (name, proc) in enumerate(self.procs):
            code = proc.poll()
            if code is None:
                continue
            if name not in self.restartable:
                raise RuntimeError(f"{name} exited with {code}; see {self.logs / (name + '.log')}")
            say(f"{name} exited with {code}; starting it again")
            self.procs[index] = (name, self._spawn(name, *self.restartable[name]))

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                say(f"stopped {name}")


def wait_for_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited at start (code {proc.returncode})")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not open port {port} in {timeout:.0f} s")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_signal(failed: Callable[[], bool]) -> None:
    """Until Ctrl-C or SIGTERM; `failed` is polled each second and ends the wait when true."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set() and not failed():
        try:
            await asyncio.wait_for(stop.wait(), timeout=1.0)
        except TimeoutError:
            pass
    say("stopping…")
