"""A real PostgreSQL server for tests: PostgreSQL 16 with the pgvector extension that the PyPI
wheel `pgserver` carries (a dev dependency; Debian 12 packages no pgvector), else Debian's
`postgresql` package (scripts/setup_env.py; no vectors there): a fresh cluster in a temporary
directory on a free port, trust auth on 127.0.0.1 only. PostgreSQL refuses to run as root: as
root it runs as the `postgres` user."""

from __future__ import annotations

import glob
import hashlib
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port


def bin_dir() -> Path | None:
    spec = importlib.util.find_spec("pgserver")  # not imported: only its binaries are used
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
        if (bundled / "bin" / "postgres").is_file():
            return _readable_by_postgres(bundled) / "bin"
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


def _readable_by_postgres(install: Path) -> Path:
    """As root the server runs as `postgres`, which cannot enter a checkout under a private
    directory (a `mktemp -d` clone is 0700): a copy of the build in a world-readable place,
    made once per build, laid out as in site-packages (the binaries find their libraries at
    $ORIGIN/../../../pgserver.libs)."""
    if os.geteuid() != 0:
        return install
    stamp = f"{install}:{(install / 'bin' / 'postgres').stat().st_mtime_ns}"
    name = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"vidserve-pgserver-{name}"
    if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").is_file():
        staging = Path(tempfile.mkdtemp(prefix="vidserve-pgserver-"))
        shutil.copytree(install, staging / "pgserver" / "pginstall", symlinks=True)
        libs = install.parent.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "pgserver.libs", symlinks=True)
        for folder in (staging, staging / "pgserver"):
            folder.chmod(0o755)
        try:
            staging.rename(copy)
        except OSError:  # another process made it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return copy / "pgserver" / "pginstall"


class PostgresServer:
    def __init__(self) -> None:
        directory = bin_dir()
        if directory is None:
            raise RuntimeError("PostgreSQL is not installed: run `make setup-dev` (as root)")
        self._bin = directory
        self._root = Path(tempfile.mkdtemp(prefix="vidserve-pg-"))
        self._data = self._root / "data"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            shutil.chown(self._root, self._user)
        self._run(
            str(self._bin / "initdb"), "-D", str(self._data), "-U", "vidserve",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"postgresql://vidserve@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, user=self._user)

    def start(self) -> None:
        command = [
            str(self._bin / "postgres"), "-D", str(self._data),
            "-p", str(self.port), "-h", "127.0.0.1", "-k", str(self._root),
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        log = (self._root / "server.log").open("ab")
        self._process = subprocess.Popen(command, stdout=log, stderr=log, user=self._user)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [
                    str(self._bin / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "vidserve",
                ],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            if self._process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: {(self._root / 'server.log').read_text()}")

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut, as when a database goes away)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # fast shutdown: clients are cut
            self._process.wait(30)
        self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._root, ignore_errors=True)
