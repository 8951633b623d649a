"""A throwaway PostgreSQL cluster for tests, drills and the bench: Debian's server
binaries, ``initdb`` into a fresh directory, ``pg_ctl start`` on a free 127.0.0.1 port,
stopped by the postmaster's PID.

initdb refuses to run as root, so as root every server command runs as the ``postgres``
system user (``runuser``), on a directory that user owns. The superuser ``liaison`` gets a
random password (written 0600 beside the cluster), so the node connects exactly as in
production: DSN without a password, the password from ``[store] password_file``.

Debian's ``postgresql`` package provides the binaries (``make postgresql`` installs it);
``find_bin_dir`` says clearly when they are missing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_ROOT = Path("/usr/lib/postgresql")
USER = "liaison"
INSTALL_HINT = ("Debian's PostgreSQL server is not installed (no /usr/lib/postgresql/*/bin/"
                "initdb): run `make postgresql` (as root: apt-get install -y postgresql)")


class ClusterError(RuntimeError):
    """The test cluster could not be made or started (the message says why)."""


def find_bin_dir() -> Path:
    """The newest installed server's bin directory."""
    found = sorted((p for p in PG_ROOT.glob("*/bin") if (p / "initdb").is_file()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not found:
        raise ClusterError(INSTALL_HINT)
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """One running cluster; ``dsn(db)`` names a database on it (no password in it)."""

    root: Path
    port: int
    password_file: Path
    bin_dir: Path
    pid: int = 0
    _as_postgres: bool = field(default=False)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={dbname}"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise ClusterError(f"{argv[0]} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-2000:]}")
        return done

    def start(self) -> None:
        """``pg_ctl start`` and wait until it accepts connections; records the PID."""
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                f"-c unix_socket_directories='{self.root}' -c fsync=off "
                "-c max_connections=200 -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", opts,
                  "-w", "-t", "120", "start")
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self, mode: str = "fast") -> None:
        """Stop the postmaster by its PID (``immediate``: as a crash, no checkpoint)."""
        if not self.pid:
            return
        sig = {"fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self.pid = 0

    def create_database(self, name: str) -> str:
        """A new, empty database; its DSN."""
        with psycopg.connect(self.dsn(), password=self.password(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def make_cluster(parent: Path | None = None) -> Cluster:
    """initdb a new cluster in a fresh directory under ``parent`` (the system's temporary
    directory when None, or when, as root, the ``postgres`` user could not reach
    ``parent``) and start it. The caller stops it (``destroy``), even on failure."""
    bin_dir = find_bin_dir()
    as_postgres = os.geteuid() == 0
    if as_postgres and parent is not None and not _searchable(parent):
        parent = None  # the postgres user could not reach it: the system's temp directory
    if as_postgres and not _searchable(Path(tempfile.gettempdir())):
        raise ClusterError(f"the postgres user cannot reach {tempfile.gettempdir()} "
                           "(no search permission for others): set TMPDIR to one it can")
    root = Path(tempfile.mkdtemp(prefix="liaison-pg-", dir=parent))
    password_file = root / "password"
    password_file.write_text(secrets.token_urlsafe(24) + "\n")
    os.chmod(password_file, 0o600)
    cluster = Cluster(root=root, port=free_port(), password_file=password_file,
                      bin_dir=bin_dir, _as_postgres=as_postgres)
    pwfile = root / "initdb-password"  # initdb reads it as the server's user
    shutil.copyfile(password_file, pwfile)
    if as_postgres:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ClusterError("as root, the cluster runs as the 'postgres' user, and there "
                               "is none: install Debian's postgresql package") from exc
        os.chmod(root, 0o700)
        os.chown(root, pg.pw_uid, pg.pw_gid)
        os.chown(pwfile, pg.pw_uid, pg.pw_gid)
    try:
        cluster._run("initdb", "-D", str(cluster.data), "-U", USER, f"--pwfile={pwfile}",
                     "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        cluster.start()
    except BaseException:
        cluster.destroy()
        raise
    return cluster


def _searchable(directory: Path) -> bool:
    """Whether another user may pass through ``directory`` and all its parents (x for
    others): we never change the permissions of a directory that is not ours."""
    return all(d.stat().st_mode & 0o001 for d in (directory, *directory.parents))
