"""broker_configs/slurm_multihost.sbatch on a real two-node Slurm cluster: each node is a
network namespace (tests/netns.py) with its own slurmd; slurmctld runs in the first one. The
job's first node runs the broker, transmission and recorder, the second the feeders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from results.store import RunFile
from tests.conftest import ROOT, processes_mentioning, tandem
from tests.netns import two_hosts
from tests.slurm_cluster import munge_key, slurm_conf, stop_daemons
from tests.test_multihost import COMPARED, _scenario

SCRIPT = ROOT / "broker_configs" / "slurm_multihost.sbatch"
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scancel", "scontrol", "srun", "nsenter")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(hosts, root, env): munged here, slurmctld and slurmd 'nodea' in namespace A, slurmd
    'nodeb' in B. nsenter (not `ip netns exec`) keeps /sys/fs/cgroup, which slurmd needs."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        pytest.skip(f"Slurm is not installed here ({', '.join(missing)} not found): install slurm-wlm and munge")
    root = tmp_path_factory.mktemp("slurm2")
    for sub in ("state", "spool/nodea", "spool/nodeb", "log"):
        (root / sub).mkdir(parents=True)
    key = munge_key(root)
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    with two_hosts(f"tds{os.getpid() % 100000}") as hosts:
        conf = root / "slurm.conf"
        nodes = [("nodea", hosts.addr_a, 2, 1000), ("nodeb", hosts.addr_b, 2, 1000)]
        conf.write_text(slurm_conf(root, "tandemmh", (host, hosts.addr_a), nodes, root / "munge.sock"))
        env = dict(os.environ, SLURM_CONF=str(conf), PYTHON=sys.executable)
        daemons: list[subprocess.Popen] = []

        def start(name: str, ns: str | None, *argv: str) -> None:
            prefix = ["nsenter", f"--net=/run/netns/{ns}"] if ns else []
            log = open(root / "log" / f"{name}.out", "w")
            daemons.append(subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env))

        def nodes_idle() -> bool:
            out = _in(hosts.a, env, "sinfo", "--noheader", "--Node", "--format=%T").stdout.split()
            return out == ["idle", "idle"]

        try:
            start("munged", None, "munged", "--foreground", "--force", f"--socket={root}/munge.sock",
                  f"--key-file={key}", f"--log-file={root}/log/munged.log", f"--pid-file={root}/munge/munged.pid",
                  f"--seed-file={root}/munge/munged.seed")
            _wait(lambda: (root / "munge.sock").exists(), "munged", root)
            start("slurmctld", hosts.a, "slurmctld", "-D", "-i", "-f", str(conf))
            _wait(lambda: _in(hosts.a, env, "scontrol", "ping").returncode == 0, "slurmctld", root)
            start("slurmd_a", hosts.a, "slurmd", "-D", "-N", "nodea", "-f", str(conf))
            start("slurmd_b", hosts.b, "slurmd", "-D", "-N", "nodeb", "-f", str(conf))
            _wait(nodes_idle, "both slurmd (nodes idle)", root)
            yield hosts, root, env
        finally:
            try:
                _in(hosts.a, env, "scancel", "--user=root")
            except subprocess.TimeoutExpired:
                pass  # no controller: no jobs either
            stop_daemons(daemons)


def _in(ns: str, env: dict, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """A Slurm client command on 'host' ns."""
    return subprocess.run(["nsenter", f"--net=/run/netns/{ns}", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL)


def _wait(ready, what: str, root: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted((root / "log").glob("*")))
    raise RuntimeError(f"the two-node Slurm cluster did not come up: {what} not ready after {timeout:.0f} s\n{logs}")


def test_sbatch_script_runs_the_broker_node_and_the_feeder_node(cluster, tmp_path):
    hosts, root, env = cluster
    scenario = _scenario(tmp_path)
    single = tmp_path / "single.h5"
    proc = tandem("run", str(scenario), "-o", str(single), "-q")
    assert proc.returncode == 0, proc.stderr

    output = tmp_path / "slurm.h5"
    job_out = tmp_path / "job.out"
    submit = _in(hosts.a, env, "sbatch", "--wait", "--parsable", "--nodes=2", "--cpus-per-task=1",
                 f"--output={job_out}", str(SCRIPT), str(scenario), str(output), timeout=600)
    text = job_out.read_text() if job_out.exists() else ""
    assert submit.returncode == 0, submit.stderr + text
    job = submit.stdout.strip()

    # Two srun steps, one on each node (their numbers follow the order they reached slurmctld).
    assert f"tandem: broker at {hosts.addr_a}:" in text and "on nodea (broker,transmission,recorder)" in text, text
    assert "tandem: feeders_0 on nodeb" in text, text
    for node in ("nodea", "nodeb"):
        steps = (root / "log" / f"slurmd.{node}.log").read_text().count(f"launch task StepId={job}.")
        assert steps == 1, f"{node} ran {steps} steps"
    # One feeder node: one feeder process, whatever the file says.
    assert sorted(p.stem for p in (tmp_path / "slurm_run" / "logs").glob("*.log")) == \
        ["broker", "feeders_0", "recorder", "transmission"]

    with RunFile(single) as one, RunFile(output) as two:
        assert two.complete and two.n_steps == 24
        for name in COMPARED:
            np.testing.assert_allclose(two.read(name), one.read(name), rtol=0, atol=1e-9, err_msg=name)
    assert not processes_mentioning(str(tmp_path / "slurm_run")), "processes left behind"
