"""A private PostgreSQL cluster for the tests: initdb in a temporary folder, on a free port, stopped at the end.

`make test` installs Debian's postgresql when it is missing (scripts/install-postgresql.sh), so a missing
server fails the tests instead of skipping them. PostgreSQL refuses to run as root: when the tests run as
root, the cluster runs as the ``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import sqlalchemy as sa


def _binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)),
                                        None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: run scripts/install-postgresql.sh (make test does)")
    return found


class Cluster:
    """A PostgreSQL server of the tests' own; ``database()`` gives each test a fresh, empty database."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="smallguard-pg-"))
        self.data = self.folder / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self._run(_binary("initdb"), "-D", str(self.data), "-U", "smallguard", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self.start()
        self.url = f"postgresql://smallguard@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c max_connections=200", "start")

    def halt(self) -> None:
        """Stop the server at once, keeping its data (``start`` brings it back): the database going away."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def database(self) -> str:
        """A new empty database; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"),
                                  isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql://smallguard@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop at once (the tests' connections may still be open) and delete the folder."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, *command: str, check: bool = True) -> None:
        if self._as_postgres:
            command = ("runuser", "-u", "postgres", "--", *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            log = (self.folder / "server.log")
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                               + (log.read_text() if log.exists() else ""))
