"""Drives `python -m stack run` with no server URLs set, and prints what it saw as JSON.

Run by tests/test_embedded.py inside a network namespace of its own (`unshare -n`), so
the service can reach nothing but what it starts itself.
    python tests/embedded_driver.py VAR_DIR PORT (ingest|check|kill)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_INGEST = {
    "source": "meta_ads", "data_type": "campaign_performance",
    "data": {"records": [{"campaign_id": "123", "spend": 100.0, "impressions": 1000,
                          "clicks": 50, "conversions": 5}]},
}


def call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_ready(port: int, launcher: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise SystemExit(f"launcher exited with {launcher.returncode}")
        try:
            if call(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("service not ready in time")


def main() -> None:
    var_dir, port, action = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
    env.update(PIPELINE_VAR_DIR=var_dir, PORT=str(port), HOST="127.0.0.1")
    log = open(Path(var_dir).parent / f"launcher-{action}.log", "wb")  # noqa: SIM115
    launcher = subprocess.Popen([sys.executable, "-m", "stack", "run"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    report: dict = {}
    try:
        wait_ready(port, launcher)
        if action == "ingest":
            status, accepted = call(port, "POST", "/api/v1/data_pipeline/ingest", SEED_INGEST)
            report["ingest_status"] = status
            report["job_id"] = accepted["job_id"]
            _, job = call(port, "GET", f"/api/v1/jobs/{accepted['job_id']}?wait=20")
            report["job_status"] = job["status"]
        if action in ("ingest", "check", "kill"):
            _, found = call(port, "POST", "/api/v1/data_pipeline/retrieve",
                            {"data_type": "campaign_performance",
                             "filters": {"campaign_id": "123"}})
            report["total_count"] = found["result"]["total_count"]
            report["ctr"] = [r["ctr"] for r in found["result"]["records"]]
        if action == "check" and len(sys.argv) > 4:
            report["old_job_status"] = call(port, "GET", f"/api/v1/jobs/{sys.argv[4]}")[1]["status"]
    finally:
        if action == "kill":
            os.kill(launcher.pid, signal.SIGKILL)  # leave servers and children behind
            launcher.wait()
            report["launcher_exit"] = launcher.returncode
        else:
            os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
            report["launcher_exit"] = launcher.wait(60)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
