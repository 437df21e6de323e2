"""`relforge ui` serves the MLflow UI on 127.0.0.1 for the run store."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_store_on_loopback(tmp_path):
    port = free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "relforge", "ui", "--port", str(port), "--tracking-uri", uri],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.time() + 300
        body = None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert body is not None, proc.stdout.read().decode() if proc.poll() is not None else "no answer in 300 s"
        assert body.strip() == "OK"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and "<html" in r.read().decode().lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def start_ui(tmp_path, **popen) -> tuple[subprocess.Popen, int]:
    """`relforge ui` on a free port for a fresh store, once it answers /health."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "relforge", "ui", "--port", str(port), "--tracking-uri",
                             f"sqlite:///{tmp_path / 'm.db'}"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **popen)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc, port
        except OSError:
            time.sleep(1)
    proc.kill()
    raise AssertionError("the UI did not come up")


def test_ui_leaves_no_process_behind_after_sigterm(tmp_path):
    """Issue 21: ending `relforge ui` left `mlflow server` and uvicorn listening."""
    proc, port = start_ui(tmp_path)
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(1)
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "something still listens on the UI's port"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
