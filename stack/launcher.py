"""`make run`, `make api`, `make worker`, `make flower`: one launcher for every mode.

With DATABASE_URL and CELERY_BROKER_URL unset, it starts the private PostgreSQL and
Redis under ./var (see stack/embedded.py); with them set, it checks they answer and
uses them. Either way the API and the worker run as separate processes, as in production.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from stack.checks import Unreachable, check_broker, check_database
from stack.embedded import EmbeddedError, EmbeddedServers

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VAR = ROOT / "var"


def embedded_servers() -> EmbeddedServers:
    return EmbeddedServers(Path(os.environ.get("PIPELINE_VAR_DIR", DEFAULT_VAR)).resolve())


def resolve_services(start_embedded: bool = True) -> tuple[dict[str, str], EmbeddedServers | None]:
    """The environment for child processes, and the private servers when they are used."""
    database_url = os.environ.get("DATABASE_URL", "").strip()
    broker_url = os.environ.get("CELERY_BROKER_URL", "").strip()
    if bool(database_url) != bool(broker_url):
        missing = "CELERY_BROKER_URL" if database_url else "DATABASE_URL"
        raise Unreachable(f"{missing} is not set: set both DATABASE_URL and CELERY_BROKER_URL, "
                          "or neither to use the private servers under ./var")
    if database_url:
        check_database(database_url)
        check_broker(broker_url)
        return {**os.environ, "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": broker_url}, None
    servers = embedded_servers()
    if start_embedded:
        started = servers.start()
        for name, now in started.items():
            if not now:
                print(f"· private {name} was already running (left by an earlier run); using it",
                      flush=True)
    return {**os.environ, **servers.env()}, servers


def api_command(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "5000")
    return [
        sys.executable, "-m", "gunicorn", "webapp:create_app()",
        "--bind", f"{host}:{port}", "--worker-class", "gthread",
        "--workers", env.get("WEB_CONCURRENCY", "2"), "--threads", "8",
        "--timeout", "120", "--access-logfile", "-",
    ]


def worker_command(beat: bool = True, env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    command = [
        sys.executable, "-m", "celery", "-A", "webapp.make_celery", "worker",
        "-Q", "pipeline,store", "--loglevel=INFO",
        # Nothing here uses what gossip and mingle share between workers (revoked task
        # ids, clock sync). With task events on (Flower), gossip has every worker read
        # every other worker's events; mingle holds a worker's start for a second.
        "--without-gossip", "--without-mingle",
        "-c", env.get("WORKER_CONCURRENCY", "2"),
    ]
    if beat:  # the recovery sweep; run it in one worker only
        command.append("--beat")
        command += ["--schedule", str(Path(os.environ.get("PIPELINE_VAR_DIR", DEFAULT_VAR))
                                      / "celerybeat-schedule")]
    return command


def flower_command() -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "webapp.make_celery", "flower",
               f"--address={os.environ.get('FLOWER_HOST', '127.0.0.1')}",
               f"--port={os.environ.get('FLOWER_PORT', '5555')}"]
    if os.environ.get("FLOWER_BASIC_AUTH"):
        command.append(f"--basic-auth={os.environ['FLOWER_BASIC_AUTH']}")
    return command


def migrate(env: Mapping[str, str]) -> None:
    """Bring the schema to the newest migration; a schema it cannot handle is one line."""
    from tasks.storage import db
    from tasks.storage.schema import SchemaError, create_schema

    try:
        create_schema(db.configure(env["DATABASE_URL"]))
    except SchemaError as exc:
        raise Unreachable(str(exc)) from None


def _pid_file() -> Path:
    return Path(os.environ.get("PIPELINE_VAR_DIR", DEFAULT_VAR)) / "make-run.json"


def clear_leftovers() -> None:
    """Handle what a killed `make run` left: refuse if it still runs, else end its children."""
    import psutil

    pid_file = _pid_file()
    try:
        recorded = json.loads(pid_file.read_text())
    except (OSError, ValueError):
        return
    launcher = recorded.get("launcher")
    if launcher and launcher != os.getpid() and psutil.pid_exists(launcher):
        raise Unreachable(f"`make run` is already running (pid {launcher}); stop it with "
                          f"Ctrl-C in its terminal or `kill {launcher}`")
    for name, pid in recorded.get("children", {}).items():
        try:
            process = psutil.Process(pid)
            if "webapp" not in " ".join(process.cmdline()):
                continue  # the pid was reused by something else
            process.terminate()
            process.wait(15)
            print(f"· stopped a leftover {name} (pid {pid}) of a killed run", flush=True)
        except psutil.TimeoutExpired:
            try:
                os.killpg(pid, signal.SIGKILL)  # it leads a group: its children too
            except ProcessLookupError:
                process.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    pid_file.unlink(missing_ok=True)


# How `make run` stops its children: gunicorn's quick shutdown (a long poll does not hold
# it up for its 30 s), and Celery's warm shutdown (running stages finish, within 30 s).
STOP_SIGNALS = {"api": signal.SIGINT, "worker": signal.SIGTERM}


def run_all() -> int:
    """API and worker in the foreground; Ctrl-C stops both, and the private servers."""
    clear_leftovers()
    env, servers = resolve_services()
    migrate(env)
    _pid_file().parent.mkdir(parents=True, exist_ok=True)
    # Each child leads a process group of its own: a Ctrl-C reaches only this launcher,
    # which stops each child with one signal. (Sent the terminal's SIGINT and then its
    # master's SIGQUIT, a gunicorn gthread worker can deadlock in its own shutdown and
    # outlive everything.)
    children = {
        "api": subprocess.Popen(api_command(), env=_with_metrics_dir(env), cwd=ROOT,
                                start_new_session=True),
        "worker": subprocess.Popen(worker_command(), env=env, cwd=ROOT,
                                   start_new_session=True),
    }
    _pid_file().write_text(json.dumps({
        "launcher": os.getpid(), "children": {k: c.pid for k, c in children.items()}}))
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "5000")
    where = (f"private servers, data in {servers.root}" if servers
             else "DATABASE_URL / CELERY_BROKER_URL")
    print(f"\n  API      http://{host}:{port}  (try: curl http://{host}:{port}/readyz)\n"
          f"  data     {where}\n"
          f"  stop     Ctrl-C (stops the API, the worker"
          f"{' and the private servers' if servers else ''})\n", flush=True)

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)  # the terminal closed: the children would stay
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    print(f"error: the {name} exited with code {child.returncode}; stopping",
                          file=sys.stderr, flush=True)
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.2)
    finally:
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(STOP_SIGNALS[name])
        deadline = time.monotonic() + 30
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _kill_group(child)  # whatever of it is still there, once it had its time
        if servers:
            servers.stop()
        _pid_file().unlink(missing_ok=True)
        print("stopped.", flush=True)
    return exit_code


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone: the child stopped cleanly
        pass
    child.wait()


def _with_metrics_dir(env: dict[str, str]) -> dict[str, str]:
    """Prometheus counters shared by the API's processes: a folder emptied at each start."""
    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        return env
    folder = Path(os.environ.get("PIPELINE_VAR_DIR", DEFAULT_VAR)) / "prometheus"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder)}


def exec_with_services(command: list[str], api: bool = False) -> int:
    env, servers = resolve_services()
    if api:
        env = _with_metrics_dir(env)
    if servers:
        print(f"· using the private servers in {servers.root} (stop them: make stop)", flush=True)
    migrate(env)
    os.chdir(ROOT)
    os.execvpe(command[0], command, env)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stack", description=__doc__)
    parser.add_argument("command", choices=[
        "run", "api", "worker", "flower", "migrate", "servers", "stop", "reset", "env"])
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run_all()
        if args.command == "api":
            return exec_with_services(api_command(), api=True)
        if args.command == "worker":
            return exec_with_services(worker_command())
        if args.command == "flower":
            return exec_with_services(flower_command())
        if args.command == "migrate":
            migrate(resolve_services()[0])
            print("schema up to date", flush=True)
            return 0
        if args.command == "servers":
            env, _ = resolve_services()
            print(f"export DATABASE_URL='{env['DATABASE_URL']}'\n"
                  f"export CELERY_BROKER_URL='{env['CELERY_BROKER_URL']}'")
            return 0
        if args.command == "env":
            servers = embedded_servers()
            print(f"export DATABASE_URL='{servers.database_url}'\n"
                  f"export CELERY_BROKER_URL='{servers.broker_url}'")
            return 0
        servers = embedded_servers()
        if args.command in ("stop", "reset"):
            clear_leftovers()
        if args.command == "stop":
            servers.stop()
            print(f"private servers in {servers.root} stopped", flush=True)
        elif args.command == "reset":
            servers.reset()
            print(f"private servers stopped and {servers.root} deleted", flush=True)
        return 0
    except (Unreachable, EmbeddedError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
