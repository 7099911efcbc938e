"""A real single-node Slurm cluster on this machine, for the tests (session fixture `slurm_cluster`).

munged, slurmctld and slurmd (Debian's munge and slurm-wlm, which `.ci/run` installs) start as
root in the foreground from a temporary folder: their own munge key and socket, free ports, a
minimal slurm.conf naming this host (`hostname -s`) with its CPUs and memory, so the cluster
touches nothing of the system's and several test sessions can each have one. `SLURM_CONF`
points the client commands (sbatch, squeue) at it for the session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")


@dataclass
class SlurmCluster:
    conf: Path
    root: Path
    host: str
    cpus: int

    def logs(self) -> str:
        """The tails of the daemons' logs, for failure messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(int(line.split()[1]) / 1024 * 0.8)  # below what slurmd finds, or it drains the node
    return 1024


def _wait(what: str, ready, timeout: float, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise RuntimeError(f"the test Slurm cluster did not come up: {what} not ready after {timeout:.0f} s\n{cluster.logs()}")


def slurm_conf(root: Path, name: str, controller: tuple[str, str], nodes: list[tuple[str, str, int, int]],
               munge_socket: Path, ports: tuple[int, int] | None = None) -> str:
    """A minimal slurm.conf whose files all live under `root` (spool/<node> must exist):
    `controller` is (host, address), `nodes` (name, address, cpus, memory MB); `ports` the
    slurmctld and slurmd ports (Slurm's defaults when None)."""
    host, address = controller
    port_lines = f"SlurmctldPort={ports[0]}\nSlurmdPort={ports[1]}\n" if ports else ""
    node_lines = "".join(f"NodeName={n} NodeAddr={a} CPUs={c} RealMemory={m} State=UNKNOWN\n" for n, a, c, m in nodes)
    return f"""\
ClusterName={name}
SlurmctldHost={host}({address})
{port_lines}SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
MinJobAge=600
{node_lines}PartitionName=debug Nodes={",".join(n for n, *_ in nodes)} Default=YES MaxTime=INFINITE State=UP
"""


def stop_daemons(daemons: list[subprocess.Popen]) -> None:
    """Stop the daemons in reverse start order (slurmd, slurmctld, munged): gently, then hard."""
    for proc in reversed(daemons):
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def munge_key(root: Path) -> Path:
    """A fresh munge key in root/munge (made owner-only, as munged insists)."""
    key = root / "munge" / "munge.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    key.parent.chmod(0o700)
    return key


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} not found): .ci/run installs Debian's slurm-wlm and munge")
    root = tmp_path_factory.mktemp("slurm")
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    for sub in ("state", f"spool/{host}", "log", "munge_socket"):
        (root / sub).mkdir(parents=True)
    key = munge_key(root)
    munge_socket = root / "munge_socket" / "munge.sock"
    cpus = os.cpu_count() or 1
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, "tandemtest", (host, "127.0.0.1"), [(host, "127.0.0.1", cpus, _memory_mb())],
                               munge_socket, (_free_port(), _free_port())))
    cluster = SlurmCluster(conf, root, host, cpus)

    saved = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    daemons: list[subprocess.Popen] = []

    def start(argv: list[str], name: str) -> None:
        log = open(root / "log" / f"{name}.out", "w")
        daemons.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))

    def ok(*argv: str) -> bool:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0

    try:
        start(["munged", "--foreground", "--force", f"--socket={munge_socket}", f"--key-file={key}",
               f"--log-file={root / 'log' / 'munged.log'}", f"--pid-file={root / 'munge' / 'munged.pid'}",
               f"--seed-file={root / 'munge' / 'munged.seed'}"], "munged")
        _wait("munged", munge_socket.exists, 30, cluster)
        start(["slurmctld", "-D", "-i", "-f", str(conf)], "slurmctld")
        _wait("slurmctld", lambda: ok("scontrol", "ping"), 60, cluster)
        start(["slurmd", "-D", "-f", str(conf)], "slurmd")

        def node_idle() -> bool:
            out = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=30).stdout
            return out.strip() == "idle"

        _wait("slurmd (node idle)", node_idle, 60, cluster)
        yield cluster
    finally:
        subprocess.run(["scancel", "--user=root"], capture_output=True, timeout=30)
        stop_daemons(daemons)
        if saved is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved
