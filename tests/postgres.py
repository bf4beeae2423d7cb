"""A throwaway PostgreSQL cluster for tests: initdb in a temp dir, a free loopback port.

Never the machine's own PostgreSQL on 5432. initdb refuses to run as root, so as
root the cluster is made and run as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

USER = "hallhub"


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL server binaries (scripts/install.sh installs them)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found; run scripts/install.sh")
    return Path(found[-1]).parent


def _version(path: str) -> int:
    return int(Path(path).parent.parent.name.split(".")[0])


class ManagedPostgres:
    """One PostgreSQL cluster this test run owns."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._bin = postgres_bin()
        self._root = Path(tempfile.mkdtemp(prefix="hallhub-pg-"))
        self._data = self._root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self._root, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def start(self) -> None:
        """initdb (trust auth, loopback only) and start the server."""
        self._run(
            "initdb", "-D", str(self._data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self._root} "
            "-c fsync=off -c max_connections=40"
        )
        self._run("pg_ctl", "-D", str(self._data), "-o", options, "-w", "-l",
                  str(self._root / "server.log"), "start")  # fmt: skip

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        try:
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new empty database; returns its DSN."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, name)
        return self.dsn(name)

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [*self._as, str(self._bin / tool), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stderr.strip()[-2000:]}")
