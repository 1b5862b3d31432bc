"""``wearfhir worker``: set up the recovery directory, start the worker process(es), restart the cluster when one dies.

A Bytewax cluster cannot lose a process: the others exit within a fraction of a second and the whole cluster must
start again from the last committed epoch (that is safe: nothing is lost or counted twice). This supervisor does
exactly that, with a growing pause between restarts, and on SIGTERM/SIGINT asks every process to drain (stop
reading, let the epoch commit, exit 0) before it exits itself.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wearfhir.errors import ConfigError
from wearfhir.settings import WorkerSettings

__all__ = ["ClusterPlan", "ensure_recovery", "run_supervised"]

log = logging.getLogger("wearfhir.supervisor")


@dataclass(frozen=True)
class ClusterPlan:
    """Which processes this supervisor runs and how they find each other."""

    recovery_dir: Path
    snapshot_seconds: int = 10
    backup_seconds: int = 3600
    processes: int = 1  # processes on this machine (all of the cluster unless ``addresses`` is given)
    addresses: tuple[str, ...] = ()  # host:port of every process of a multi-machine cluster
    process_id: int | None = None  # with ``addresses``: the one process this machine runs
    restart: bool = True


def recovery_partitions(directory: Path) -> int:
    """How many recovery partitions (``part-*.sqlite3``) a directory holds."""
    return len(list(directory.glob("part-*.sqlite3")))


def ensure_recovery(directory: Path, partitions: int) -> int:
    """Create the recovery partitions if the directory has none; returns how many there are.

    The count is fixed for the life of the directory: create as many as the most processes you will ever run.
    """
    directory.mkdir(parents=True, exist_ok=True)
    have = recovery_partitions(directory)
    if have:
        return have
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(directory), str(partitions)],  # noqa: S603
                   check=True, stdout=subprocess.DEVNULL)
    log.info("created %d recovery partitions in %s", partitions, directory)
    return recovery_partitions(directory)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _commands(plan: ClusterPlan) -> list[tuple[int, list[str]]]:
    base = [sys.executable, "-m", "bytewax.run", "flows.worker:flow", "-r", str(plan.recovery_dir),
            "-s", str(plan.snapshot_seconds), "-b", str(plan.backup_seconds)]
    if plan.addresses:
        assert plan.process_id is not None
        return [(plan.process_id, [*base, "-i", str(plan.process_id), "-a", ";".join(plan.addresses)])]
    if plan.processes == 1:
        return [(0, base)]
    addresses = ";".join(f"127.0.0.1:{port}" for port in _free_ports(plan.processes))
    return [(k, [*base, "-i", str(k), "-a", addresses]) for k in range(plan.processes)]


def check_flow_imports(env: dict[str, str]) -> None:
    """Import the flow module in a plain interpreter first: ``bytewax.run`` hides the cause of an import error."""
    done = subprocess.run([sys.executable, "-c", "import flows.worker"], env=env,  # noqa: S603
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"the worker flow does not import:\n{done.stderr.strip()[-2000:]}")


def run_supervised(settings: WorkerSettings, plan: ClusterPlan) -> int:
    """Run the cluster until SIGTERM/SIGINT; returns the exit code."""
    env = dict(os.environ, WEARFHIR_WORKER_SETTINGS=json.dumps(settings.model_dump(mode="json")))
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    check_flow_imports(env)
    stopping = {"asked": False}

    def ask_stop(signum: int, _: Any) -> None:
        stopping["asked"] = True

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    pause = 1.0
    while True:
        procs = []
        for index, command in _commands(plan):
            # a session of their own: a terminal's Ctrl-C reaches only the supervisor, which then drains them
            procs.append(subprocess.Popen(command, env=dict(env, WEARFHIR_PROCESS_ID=str(index)),  # noqa: S603
                                          start_new_session=True))
        started = time.monotonic()
        log.info("worker cluster started: %d process(es)", len(procs))
        while not stopping["asked"] and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        if stopping["asked"]:
            return _drain(procs, plan)
        dead = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode is not None]
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
        if not plan.restart:
            return 1
        pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 30.0)
        log.error("worker process(es) %s exited; restarting the whole cluster from the last committed epoch in "
                  "%.0f s", ", ".join(f"{i} (rc {rc})" for i, rc in dead), pause)
        time.sleep(pause)


def _drain(procs: list[subprocess.Popen[bytes]], plan: ClusterPlan) -> int:
    """Ask every process to drain, wait for them (two epochs and a margin), kill what is left."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3 * plan.snapshot_seconds + 10
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    stuck = [p for p in procs if p.poll() is None]
    for p in stuck:
        p.kill()
        p.wait()
    if stuck:
        log.warning("%d worker process(es) did not drain in time and were killed (safe: the next start replays "
                    "the last epoch)", len(stuck))
    return 0
