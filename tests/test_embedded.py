"""`make run` with nothing but Python: private PostgreSQL and Redis, no outside server.

Each run happens in a network namespace of its own (`unshare -n`, loopback up): no TCP
server of the machine is reachable there, so the service works only if it brings its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from stack.embedded import EmbeddedServers

ROOT = Path(__file__).resolve().parents[1]
DRIVER = ROOT / "tests" / "embedded_driver.py"
PORT = 5099

pytestmark = pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs unshare and root to make a network namespace",
)


def drive(var_dir: Path, *args: str) -> dict:
    command = ["unshare", "-n", "sh", "-c",
               'ip link set lo up && exec "$0" "$@"',
               sys.executable, str(DRIVER), str(var_dir), str(PORT), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (result.stdout, result.stderr,
                                    _logs(var_dir.parent))
    return json.loads(result.stdout.strip().splitlines()[-1])


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-2000:] for p in folder.glob("*.log"))


def _processes_using(var_dir: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(var_dir) in cmdline or f"127.0.0.1:{PORT}" in cmdline:
            found.append(cmdline)
    return found


def test_make_run_on_private_servers_survives_restarts_and_leftovers(tmp_path):
    var_dir = tmp_path / "var"

    first = drive(var_dir, "ingest")
    assert first["ingest_status"] == 202
    assert first["job_status"] == "succeeded"
    assert first["total_count"] == 1 and first["ctr"] == [0.05]
    assert first["launcher_exit"] == 0
    assert _processes_using(var_dir) == []  # Ctrl-C stopped the servers too

    second = drive(var_dir, "check", first["job_id"])  # data and jobs survive a restart
    assert second["total_count"] == 1
    assert second["old_job_status"] == "succeeded"

    killed = drive(var_dir, "kill")  # a killed run leaves servers and children behind
    assert killed["total_count"] == 1
    assert EmbeddedServers(var_dir).postgres_running()

    third = drive(var_dir, "ingest")  # the next run finds and handles the leftovers
    assert third["job_status"] == "succeeded" and third["total_count"] == 1
    assert _processes_using(var_dir) == []
