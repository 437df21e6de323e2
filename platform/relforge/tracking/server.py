"""An MLflow tracking server for a run store: what ``relforge ui`` and
``relforge server`` serve, and what a sweep whose cells run in several
processes logs through (SQLite takes one writer at a time; a server
serialises them and gives every cell the same store).

The server is ``mlflow server`` in a process group of its own, bound to
127.0.0.1 unless told otherwise; for a local SQLite store the artifacts go to
``mlartifacts/`` beside the database, as for runs logged straight into it.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def default_allowed_hosts(port: int) -> str:
    """The Host headers a server bound beyond loopback accepts by default:
    this machine's names (what ``http://$(hostname):PORT`` sends), besides
    MLflow's own default (localhost and private IP addresses)."""
    names = {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1"}
    return ",".join(sorted(f"{n}{suffix}" for n in names if n for suffix in ("", f":{port}")) +
                    ["10.*", "192.168.*"] + [f"172.{i}.*" for i in range(16, 32)])


def server_command(store_uri: str, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
                   artifacts_destination: str | None = None, allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line for ``store_uri`` (SQLite,
    PostgreSQL, ...). ``artifacts_destination``: where the server stores
    artifacts it is sent (default: ``mlartifacts/`` beside a SQLite store).
    ``allowed_hosts``: the Host headers it answers (MLflow refuses others
    against DNS rebinding); bound beyond 127.0.0.1 it defaults to this
    machine's names and private addresses."""
    from relforge.tracking.mlflow_tracker import artifact_location_for

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host", host,
           "--port", str(port), "--workers", str(workers)]
    root = artifacts_destination or artifact_location_for(store_uri)
    if root:
        cmd += ["--default-artifact-root", root]
    if allowed_hosts or host not in ("127.0.0.1", "localhost"):
        cmd += ["--allowed-hosts", allowed_hosts or default_allowed_hosts(port)]
    return cmd


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    # MLflow's server-side job runner (GenAI evaluation jobs) is of no use to
    # RelForge and starts a pool of worker processes: keep it off unless asked for
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def is_up(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class TrackingServer:
    """A running ``mlflow server``: ``uri`` (``http://127.0.0.1:PORT``) for
    clients, ``store_uri`` the store behind it, ``pid`` its process group."""

    uri: str
    store_uri: str
    process: subprocess.Popen | None
    pid: int

    def stop(self) -> None:
        stop_process_group(self.pid, process=self.process)

    def __enter__(self) -> TrackingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process_group(pid: int, grace_s: float = 10.0, process: subprocess.Popen | None = None) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL if it is still there after ``grace_s``.
    ``process``: the leader when it is this process's child, reaped here (an unreaped leader keeps
    its group alive to ``killpg``, which would wait out the whole grace)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.time() + grace_s
    while time.time() < deadline:
        if process is not None:
            process.poll()
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def start_server(store_uri: str, *, host: str = "127.0.0.1", port: int | None = None, log: Path | None = None,
                 wait_s: float = 300.0) -> TrackingServer:
    """Start ``mlflow server`` for ``store_uri`` and return once it answers
    ``/health``. Raises :class:`relforge.validation.UserFacingError` (one
    line, with the end of its log) when it does not come up."""
    port = port or free_port(host)
    url = f"http://{host}:{port}"
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
    try:
        proc = subprocess.Popen(server_command(store_uri, host=host, port=port), env=server_env(),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        if log is not None:
            out.close()
    server = TrackingServer(url, store_uri, proc, proc.pid)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        if is_up(url):
            return server
        time.sleep(0.5)
    server.stop()
    tail = ""
    if log is not None and log.is_file():
        tail = " ".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:])
    from relforge.validation import UserFacingError

    raise UserFacingError(f"the MLflow tracking server for {store_uri} did not come up on {url} "
                          f"within {wait_s:.0f} s{': ' + tail if tail else ''}")
