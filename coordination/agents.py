"""The DSOs of a scheme: one agent per feeder, run in this process or in worker processes.

A `DsoAgent` holds the models its scheme gives a DSO (built once, see `coordination.dso`)
and answers the scheme's calls with plain data (arrays, dataclasses), which is all that
crosses the TSO-DSO interface. A pool runs the agents: `LocalPool` in this process, one
after the other; `ProcessPool` in persistent worker processes, each holding the built
models of its group of feeders across iterations and solves, so the DSO problems of one
round solve in parallel.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Mapping
from multiprocessing.connection import Connection

import numpy as np

from coordination.centralized import FeederSetup, Options
from coordination.dso import FeederProblem, FeederSolve
from coordination.flexibility import FLOW_TOLERANCE, VOLTAGE_TOLERANCE, robust_bands, robust_regions
from coordination.update import FeederUpdate
from coordination.validation import DerOffer, DerValidator

DEVIATION_PENALTY = 1e5  # currency per MWh (Mvarh) a DSO misses a target by: ten times the value of lost load


class DsoAgent:
    """One DSO in a scheme ("hybrid", "dso_managed", "dso_first" or "admm")."""

    def __init__(self, name: str, setup: FeederSetup, options: Options, scheme: str,
                 region_directions: int = 16, priority: str = "dso"):
        self.name = name
        self.scheme = scheme
        self.region_directions = region_directions
        self.priority = priority
        self.models: dict[str, FeederProblem] = {}
        if scheme == "admm":
            self.models["admm"] = FeederProblem(setup, options, proximal=True)
        else:
            self.models["main"] = FeederProblem(setup, options, price=scheme == "dso_first",
                                                head_target=scheme == "dso_managed", der_targets=scheme == "hybrid")
        if scheme == "dso_managed":
            self.models["robust"] = FeederProblem(setup, options, directions=True, robust=True)
        self.validator = DerValidator(self.models["main"]) if scheme == "hybrid" else None
        self._admm_data_pushed = False

    # -- data -------------------------------------------------------------------------------
    def update(self, data: FeederUpdate) -> None:
        self._admm_data_pushed = False  # the next ADMM solve re-sends everything
        for model in self.models.values():
            model.update(data)
        if self.validator is not None and data.ratios is not None:
            self.validator.set_ratios(data.ratios)

    def _solve(self, model: str, full: bool, changed: str = "all") -> FeederSolve:
        out = self.models[model].solve(full, changed)
        if model == "admm":
            self._admm_data_pushed = True
        if not out.optimal and out.status != "time limit (feasible)":
            raise RuntimeError(f"DSO {self.name}: {model} problem {out.status}")
        return out

    # -- the scheme's calls -----------------------------------------------------------------
    def own(self) -> FeederSolve:
        """The DSO's own optimum (no price, no target)."""
        main = self.models["main"]
        self._reset(main)
        return self._solve("main", full=False)

    def respond(self, price: np.ndarray) -> FeederSolve:
        """dso_first: the DSO's optimum at an energy price at its interface (currency per MWh)."""
        main = self.models["main"]
        main.set_params(price=price)
        return self._solve("main", full=True)

    def region(self) -> dict[str, np.ndarray]:
        """dso_managed: the P-Q region of every period, holding jointly (`robust_regions`),
        as points [period, point, (P, Q)] with the DSO's cost at each [period, point]; the
        first point is the DSO's own optimum in the robust model."""
        main, robust = self.models["main"], self.models["robust"]
        self._reset(main)
        self._solve("main", full=False)
        bands = robust_bands(robust, main.unit_power(), main.battery_soc())
        volt, flow = main.period_violations()
        regions = robust_regions(robust, bands, {"cap_voltage": volt + VOLTAGE_TOLERANCE, "cap_flow": flow + FLOW_TOLERANCE},
                                 self.region_directions)
        points = np.stack([np.vstack([r.reference, r.points]) for r in regions])
        costs = np.stack([np.concatenate([[r.reference_cost], r.costs]) for r in regions])
        return {"points": points, "costs": costs}

    def follow(self, p_kw: np.ndarray, q_kvar: np.ndarray) -> FeederSolve:
        """dso_managed: dispatch the DERs to meet interface targets at least cost."""
        main = self.models["main"]
        main.set_params(target_p=p_kw, target_q=q_kvar, weight_target=DEVIATION_PENALTY)
        return self._solve("main", full=True)

    def validate(self) -> DerOffer:
        """hybrid: the DSO's reference dispatch, then the ranges its network absorbs."""
        self.own()
        return self.validator.validate(self.priority)

    def follow_ders(self, unit_p_kw: Mapping[str, np.ndarray]) -> FeederSolve:
        """hybrid: apply the TSO's active powers of the units; the DSO sets reactive power."""
        main = self.models["main"]
        main.set_params(der_target=unit_p_kw, weight_der=DEVIATION_PENALTY)
        return self._solve("main", full=True)

    def admm(self, center_kw: np.ndarray, kappa: float, full: bool = False) -> FeederSolve:
        """admm: the DSO's update, min own cost + kappa |p - center|^2 (kappa per MW^2)."""
        self.models["admm"].set_params(center=np.asarray(center_kw, dtype=float) / 1000.0, kappa=kappa)
        return self._solve("admm", full=full, changed="proximal" if self._admm_data_pushed else "all")

    def reread(self, model: str) -> FeederSolve:
        """The last solution of one of the agent's models, read in full."""
        return self.models[model].reread()

    def timing(self) -> float:
        """Seconds spent in HiGHS since the last call."""
        out = 0.0
        for model in self.models.values():
            out += model.highs_total
            model.highs_total = 0.0
        return out

    def size(self) -> tuple[int, int]:
        """Variables and constraints of the agent's models."""
        return (sum(m.n_variables for m in self.models.values()), sum(m.n_constraints for m in self.models.values()))

    def _reset(self, main: FeederProblem) -> None:
        flags = main.flags
        params = {}
        if flags["price"]:
            params["price"] = 0.0
        if flags["head_target"]:
            params["weight_target"] = 0.0
        if flags["der_targets"]:
            params["weight_der"] = 0.0
        main.set_params(**params)


def _call(agents: Mapping[str, DsoAgent], method: str, args: Mapping[str, Mapping[str, object]]) -> dict:
    return {name: getattr(agents[name], method)(**kwargs) for name, kwargs in args.items()}


def worker_groups(sizes: Mapping[str, float], processes: int) -> list[list[str]]:
    """Feeders spread over `processes` workers: largest first onto the least loaded one."""
    groups: list[list[str]] = [[] for _ in range(processes)]
    load = [0.0] * processes
    for name, size in sorted(sizes.items(), key=lambda item: -item[1]):
        k = int(np.argmin(load))
        groups[k].append(name)
        load[k] += size
    return groups


class LocalPool:
    """The agents in this process. `rounds` keeps the seconds each agent took in each call
    (what a parallel pool would overlap; see benchmarks/dso_parallel.py)."""

    processes = 0

    def __init__(self, setups: Mapping[str, FeederSetup], options: Options, scheme: str, **agent_options):
        self.agents = {name: DsoAgent(name, setup, options, scheme, **agent_options) for name, setup in setups.items()}
        self.rounds: deque[dict[str, float]] = deque(maxlen=10_000)  # bounded: a week of ADMM plans adds up

    def update(self, data: Mapping[str, FeederUpdate]) -> None:
        for name, values in data.items():
            self.agents[name].update(values)

    def call(self, method: str, args: Mapping[str, Mapping[str, object]]) -> dict:
        out, seconds = {}, {}
        for name, kwargs in args.items():
            start = time.perf_counter()
            out[name] = getattr(self.agents[name], method)(**kwargs)
            seconds[name] = time.perf_counter() - start
        self.rounds.append(seconds)
        return out

    def highs_seconds(self) -> float:
        return sum(agent.timing() for agent in self.agents.values())

    def close(self) -> None:
        pass


def _serve(conn) -> None:
    """A worker process: build the agents of its feeders, then answer requests until closed."""
    try:
        _, setups, options, scheme, agent_options = conn.recv()
        agents = {name: DsoAgent(name, setup, options, scheme, **agent_options) for name, setup in setups.items()}
        conn.send(("ok", None))
    except EOFError:
        return
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the coordinator is gone
            return
        kind = request[0]
        if kind == "close":
            return
        try:
            if kind == "update":
                for name, values in request[1].items():
                    agents[name].update(values)
                result = None
            elif kind == "call":
                result = _call(agents, request[1], request[2])
            else:  # "timing"
                result = sum(agent.timing() for agent in agents.values())
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class ProcessPool:
    """The agents in `processes` persistent worker processes (feeders spread by size).

    Each worker is a fresh interpreter (`python -m coordination.agents`) joined by a socket
    pair: no fork of a process whose HiGHS may run threads, and no re-import of the
    caller's main script (as multiprocessing's spawn would do)."""

    def __init__(self, setups: Mapping[str, FeederSetup], options: Options, scheme: str, processes: int,
                 **agent_options):
        processes = max(1, min(processes, len(setups)))
        self.processes = processes
        groups = [{name: setups[name] for name in names}
                  for names in worker_groups({name: len(s.data.nodes) for name, s in setups.items()}, processes)]
        self.owner = {name: k for k, group in enumerate(groups) for name in group}
        self.conns: list[Connection] = []
        self.workers: list[subprocess.Popen] = []
        try:
            for group in groups:
                ours, theirs = socket.socketpair()
                worker = subprocess.Popen([sys.executable, "-m", "coordination.agents", str(theirs.fileno())],
                                          pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
                theirs.close()
                conn = Connection(ours.detach())
                self.conns.append(conn)
                self.workers.append(worker)
                conn.send(("init", group, options, scheme, agent_options))
            for conn in self.conns:
                self._receive(conn)
        except BaseException:
            self.close()
            raise

    def _receive(self, conn):
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError):
            raise RuntimeError("a DSO worker process ended unexpectedly (its error, if any, is printed above)") from None
        if status == "error":
            raise RuntimeError(f"DSO worker failed:\n{payload}")
        return payload

    def _split(self, data: Mapping[str, object]) -> list[dict]:
        parts: list[dict] = [{} for _ in self.conns]
        for name, values in data.items():
            parts[self.owner[name]][name] = values
        return parts

    def update(self, data: Mapping[str, FeederUpdate]) -> None:
        parts = self._split(data)
        busy = [k for k, part in enumerate(parts) if part]
        for k in busy:
            self.conns[k].send(("update", parts[k]))
        for k in busy:
            self._receive(self.conns[k])

    def call(self, method: str, args: Mapping[str, Mapping[str, object]]) -> dict:
        """All workers at once; returns when every one has answered."""
        parts = self._split(args)
        busy = [k for k, part in enumerate(parts) if part]
        for k in busy:
            self.conns[k].send(("call", method, parts[k]))
        out: dict = {}
        for k in busy:
            out.update(self._receive(self.conns[k]))
        return out

    def highs_seconds(self) -> float:
        for conn in self.conns:
            conn.send(("timing",))
        return float(sum(self._receive(conn) for conn in self.conns))

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close",))
            except OSError:
                pass
        for conn, worker in zip(self.conns, self.workers):
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
            conn.close()
        self.conns, self.workers = [], []

    def __del__(self):
        if getattr(self, "workers", None):
            self.close()


def make_pool(setups: Mapping[str, FeederSetup], options: Options, scheme: str, processes: int, **agent_options):
    """A ProcessPool with `processes` workers, or a LocalPool for 0."""
    if processes > 0:
        return ProcessPool(setups, options, scheme, processes, **agent_options)
    return LocalPool(setups, options, scheme, **agent_options)


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
