"""A redis-server of the lab's own, on a free loopback port: to kill -9, restart and pause.

Faults that hit a whole server — killing its process, `SCRIPT FLUSH`, `CLIENT PAUSE` — must never
touch a Redis that others use. This starts one for the caller alone, without persistence
(`--save "" --appendonly no`), so that a restart loses every key as a production Redis without
persistence would. Needs the `redis-server` executable (Debian's redis-server package).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from inventory_lab.backends import free_port
from inventory_lab.errors import BackendError


def available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """One redis-server process; `url` stays the same across restarts."""

    def __init__(self, port: int | None = None) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise BackendError("redis-server is not installed (apt-get install redis-server)")
        self.executable = executable
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ilab-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BackendError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        """kill -9: the process dies at once, with every key (nothing is persisted)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
