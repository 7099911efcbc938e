"""Key performance indicators of a run, computed one way for every run and coupling scheme.

    from tandem.kpis import kpis, kpi_table
    values = kpis("runs/output/small_iterative.h5")      # {"pv_curtailment_MWh": 1.2, ...}
    table = kpi_table([path_a, path_b])                    # one column per run

Everything is read through the results API (`results.dataset.open`). The unit is the last
part of each name (`_MWh`, `_kWh`, `_pu`, `_s`, `_h`, `_pct`, `_node_h`, `_branch_h`).

Feeder quantities in the file are for ONE copy of a feeder; names ending in `_per_copy`
add up one copy of every feeder, the others are system totals (each feeder times its
`feeders/multiplier`, as the transmission side sees it). Energies integrate each row
over one step (the value of row k stands for step k).

A KPI the file does not allow is NaN, with the reason under `<name>.note` (a string).
Notes also say how a derived KPI was derived. `RECORDER_GAPS` lists what the recorder
would have to write for the KPIs it cannot give today.

Costs: only when the file has `coordinator/...` time series, each recorded cost series is
summed over the steps (`coordinator_<name>_sum_<units>`), and each solve-time (`s`) and
iteration series gives its total, mean and max. Nothing of the kind is reported otherwise.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

import results.dataset

BAND = (0.95, 1.05)  # the band the recorder counts `feeders/nodes_outside_band` against
OVERLOAD_PCT = 100.0

# What the recorder does not write and the KPIs that need it (what NaN KPIs point to).
RECORDER_GAPS = {
    "distribution_losses_MWh": (
        "per-feeder losses are not recorded: the recorder would need `feeders/losses_kw` "
        "(OpenDSS Circuit.Losses per step, one copy) or the served load `feeders/load_kw` "
        "(losses = substation P + PV + battery discharge - load - EV)"
    ),
    "transmission_losses_MWh": (
        "generation is not recorded (`transmission/gen_p_mw`, `transmission/ext_grid_p_mw` or "
        "per-branch `transmission/branch_pl_mw` would give losses directly); until then the losses are "
        "derived from the recorded bus voltage phasors and the branch admittances of the scenario's network"
    ),
    "voltage_heat_map": (
        "only per-feeder min/max voltages are recorded: a node-by-time heat map needs "
        "`feeders/v_pu/<name>` [time, node] (every node's voltage magnitude)"
    ),
}

KpiValue = float | str


class _Reader:
    """One run, each dataset read at most once (the report and the KPIs share it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.results = results.dataset.open(self.path)
        except FileNotFoundError:
            raise
        except (OSError, KeyError) as exc:  # not HDF5, or HDF5 without a run's attributes
            raise OSError(f"{self.path}: not a readable results file ({exc})") from None
        self._cache: dict[str, np.ndarray] = {}
        names = set()
        self.results.run.file.visit(names.add)
        self.all_names = names
        self.series_names = set(self.results.names()) if self.results.n_steps else set()

    def close(self) -> None:
        self.results.close()

    def __enter__(self) -> "_Reader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- facts -----------------------------------------------------------
    @property
    def n(self) -> int:
        return self.results.n_steps

    @property
    def scenario(self) -> dict:
        return self.results.scenario

    @property
    def name(self) -> str:
        return str(self.scenario.get("name", "")) or self.path.stem

    @property
    def label(self) -> str:
        """Scenario name + file stem, how runs are told apart in tables and legends."""
        name = str(self.scenario.get("name", ""))
        return f"{name} ({self.path.stem})" if name and name != self.path.stem else self.path.stem

    @property
    def step_hours(self) -> float:
        return pd.Timedelta(self.scenario["time"]["step"]).total_seconds() / 3600.0

    @property
    def times(self) -> pd.DatetimeIndex:
        return self.results.times

    def has(self, name: str) -> bool:
        return name in self.all_names

    def read(self, name: str) -> np.ndarray:
        """A dataset's values (time-indexed ones cut to the complete rows)."""
        if name not in self._cache:
            self._cache[name] = np.asarray(self.results.run.read(name))
        return self._cache[name]

    def labels(self, name: str) -> list[str]:
        return [str(v) for v in self.read(name)]

    def units(self, name: str) -> str:
        return self.results.run.units(name)

    def multipliers(self) -> np.ndarray:
        n_f = len(self.read("feeders/name")) if self.has("feeders/name") else 0
        if self.has("feeders/multiplier"):
            return np.asarray(self.read("feeders/multiplier"), dtype=float)
        return np.ones(n_f)


def _where_when(values: np.ndarray, pick) -> tuple[float, int, int]:
    """Value, time row and column of the extreme of a [time, x] array (NaN-safe)."""
    flat = int(pick(values))
    k, j = np.unravel_index(flat, values.shape)
    return float(values[k, j]), int(k), int(j)


def _nan(out: dict, name: str, why: str) -> None:
    out[name] = math.nan
    out[f"{name}.note"] = why


# -- transmission losses from recorded voltages ---------------------------------------------


@lru_cache(maxsize=8)
def _branch_model(network: str):
    """(baseMVA, Yf, Yt, from, to, lookup of pandapower bus index -> internal bus) of a network,
    with the same power-flow options the transmission federate uses (so the same branch model)."""
    import pandapower as pp
    from pandapower.pypower.idx_brch import F_BUS, T_BUS
    from pandapower.pypower.makeYbus import makeYbus

    from grid.networks import load_network

    net = load_network(network)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    ppc = net._ppc
    _, yf, yt = makeYbus(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    f = ppc["branch"][:, F_BUS].real.astype(int)
    t = ppc["branch"][:, T_BUS].real.astype(int)
    lookup = net._pd2ppc_lookups["bus"]
    return float(ppc["baseMVA"]), yf.tocsr(), yt.tocsr(), f, t, lookup, int(ppc["bus"].shape[0])


def transmission_losses_mw(network: str, bus_names, vm_pu: np.ndarray, va_deg: np.ndarray) -> np.ndarray:
    """Losses of all branches (MW) at each row, from bus voltage phasors [time, bus] and the
    network's branch admittances: sum over branches of Re(S_from + S_to). Equal to pandapower's
    res_line.pl_mw + res_trafo.pl_mw of the solve that gave the voltages."""
    base, yf, yt, f, t, lookup, n_internal = _branch_model(network)
    internal = lookup[np.asarray([int(b) for b in bus_names])]
    v = np.zeros((vm_pu.shape[0], n_internal), dtype=complex)
    v[:, internal] = np.nan_to_num(vm_pu * np.exp(1j * np.deg2rad(va_deg)))
    known = np.zeros(n_internal, bool)
    known[internal] = True
    if not (known[f].all() and known[t].all()):
        raise ValueError("the network has internal buses (e.g. 3-winding transformers) whose voltages are not recorded")
    i_f = (yf @ v.T).T
    i_t = (yt @ v.T).T
    s = v[:, f] * np.conj(i_f) + v[:, t] * np.conj(i_t)
    return s.real.sum(axis=1) * base


# -- the KPIs ---------------------------------------------------------------------------------


def _run_facts(r: _Reader, out: dict) -> None:
    run = r.results.run
    out["scenario"] = r.name
    out["file"] = str(r.path)
    out["coupling"] = str(r.scenario.get("coupling", {}).get("mode", ""))
    out["complete"] = "yes" if r.results.complete else "no"
    if r.results.error:
        out["error"] = r.results.error
    out["steps"] = float(r.n)
    out["steps_planned"] = float(run.attr("n_steps_planned", r.n))
    out["simulated_h"] = r.n * r.step_hours
    out["step_h"] = r.step_hours
    out["feeders"] = float(len(r.read("feeders/name"))) if r.has("feeders/name") else 0.0
    started, finished = str(run.attr("started_at", "")), str(run.attr("finished_at", ""))
    if started and finished:
        out["wall_time_s"] = (pd.Timestamp(finished) - pd.Timestamp(started)).total_seconds()
        out["wall_time_s.note"] = "finished_at - started_at of the recorder, 1 s resolution"
    else:
        _nan(out, "wall_time_s", "finished_at not set: the recorder did not close the file")


def _losses(r: _Reader, out: dict) -> None:
    network = r.scenario.get("transmission", {}).get("network")
    needed = ("transmission/vm_pu", "transmission/va_deg", "transmission/bus")
    if not network or not all(r.has(n) for n in needed) or r.n == 0:
        _nan(out, "transmission_losses_MWh", "no transmission network or bus voltages in the file; " + RECORDER_GAPS["transmission_losses_MWh"])
    else:
        try:
            losses = transmission_losses_mw(network, r.labels("transmission/bus"), r.read("transmission/vm_pu"), r.read("transmission/va_deg"))
        except Exception as exc:  # network file moved, internal buses, ...
            _nan(out, "transmission_losses_MWh", f"could not derive ({exc}); " + RECORDER_GAPS["transmission_losses_MWh"])
        else:
            out["transmission_losses_MWh"] = float(losses.sum() * r.step_hours)
            out["transmission_losses_MWh.note"] = (
                f"derived: sum over branches of Re(S_from + S_to) from the recorded bus voltage phasors and the "
                f"branch admittances of network {Path(str(network)).name!r} (the generation needed for "
                f"generation - load is not recorded)"
            )
            out["transmission_losses_peak_MW"] = float(np.nanmax(losses))
            r._cache["derived/transmission_losses_mw"] = losses
    if r.has("feeders/losses_kw") and r.n:
        per_copy = r.read("feeders/losses_kw")  # [time, feeder], kW of one copy
        out["distribution_losses_MWh"] = float((per_copy * r.multipliers()).sum() * r.step_hours / 1000.0)
        out["distribution_losses_MWh.note"] = "OpenDSS circuit losses of each feeder step; system = each feeder x its multiplier"
        out["distribution_losses_MWh_per_copy"] = float(per_copy.sum() * r.step_hours / 1000.0)
    else:
        _nan(out, "distribution_losses_MWh", RECORDER_GAPS["distribution_losses_MWh"])


def _feeder_voltages(r: _Reader, out: dict) -> None:
    if not r.has("feeders/vmin_pu") or r.n == 0:
        return
    feeders = r.labels("feeders/name")
    times, m = r.times, r.multipliers()

    def node(kind: str, k: int, j: int) -> str:
        nodes_path, index_path = f"feeders/nodes/{feeders[j]}", f"feeders/{kind}_node"
        if r.has(nodes_path) and r.has(index_path):
            idx = int(r.read(index_path)[k, j])
            nodes = r.read(nodes_path)
            if 0 <= idx < len(nodes):
                return f"{feeders[j]} node {nodes[idx]}"
        return feeders[j]

    for kind, pick in (("vmin", np.nanargmin), ("vmax", np.nanargmax)):
        values = r.read(f"feeders/{kind}_pu")
        if np.all(np.isnan(values)):
            continue
        v, k, j = _where_when(values, pick)
        out[f"feeder_{kind}_pu"] = v
        out[f"feeder_{kind}_where"] = node(kind, k, j)
        out[f"feeder_{kind}_time"] = str(times[k])
    if r.has("feeders/nodes_outside_band"):
        outside = r.read("feeders/nodes_outside_band").astype(float)
        per_feeder = outside.sum(axis=0) * r.step_hours
        out["voltage_violation_node_h_per_copy"] = float(per_feeder.sum())
        out["voltage_violation_node_h"] = float((per_feeder * m).sum())
        out["voltage_violation_node_h.note"] = (
            f"nodes outside {BAND[0]}-{BAND[1]} pu x step hours; system = each feeder x its multiplier"
        )
        out["voltage_violation_steps"] = float((outside.sum(axis=1) > 0).sum())


def _transmission(r: _Reader, out: dict) -> None:
    if r.n == 0:
        return
    times = r.times
    vm = r.read("transmission/vm_pu") if r.has("transmission/vm_pu") else None
    if vm is not None and vm.size and not np.all(np.isnan(vm)):
        buses = r.labels("transmission/bus") if r.has("transmission/bus") else [str(i) for i in range(vm.shape[1])]
        for kind, pick in (("vmin", np.nanargmin), ("vmax", np.nanargmax)):
            v, k, j = _where_when(vm, pick)
            out[f"transmission_{kind}_pu"] = v
            out[f"transmission_{kind}_where"] = f"bus {buses[j]}"
            out[f"transmission_{kind}_time"] = str(times[k])
    if r.has("transmission/loading_percent"):
        loading = r.read("transmission/loading_percent")
        branches = r.labels("transmission/branch") if r.has("transmission/branch") else [str(i) for i in range(loading.shape[1])]
        if loading.size and not np.all(np.isnan(loading)):
            v, k, j = _where_when(loading, np.nanargmax)
            out["branch_loading_max_pct"] = v
            out["branch_loading_max_where"] = branches[j]
            out["branch_loading_max_time"] = str(times[k])
        over = np.nan_to_num(loading) > OVERLOAD_PCT
        out["overload_branch_h"] = float(over.sum() * r.step_hours)
        out["overload_branch_h.note"] = f"branch loading > {OVERLOAD_PCT:.0f} %: hours x branches"
        out["overloaded_branches"] = float(over.any(axis=0).sum())
    if r.has("transmission/generation_cost_per_h"):
        rate = r.read("transmission/generation_cost_per_h")
        out["generation_cost"] = float(np.nansum(rate) * r.step_hours)
        out["generation_cost.note"] = "the network's polynomial generator costs at each step's operating point, x step length"


def _energy(r: _Reader, out: dict, name: str, per_step_kw: np.ndarray, what: str) -> None:
    """kWh per copy (sum over feeders, one copy each) and MWh for the system."""
    m = r.multipliers()
    per_feeder_kwh = per_step_kw.sum(axis=0) * r.step_hours
    out[f"{name}_kWh_per_copy"] = float(per_feeder_kwh.sum())
    out[f"{name}_MWh"] = float((per_feeder_kwh * m).sum() / 1000.0)
    out[f"{name}_MWh.note"] = what + "; system = each feeder x its multiplier"


def _ders(r: _Reader, out: dict) -> None:
    if r.n == 0:
        return
    if r.has("feeders/pv_available_kw") and r.has("feeders/pv_kw"):
        available, delivered = r.read("feeders/pv_available_kw"), r.read("feeders/pv_kw")
        _energy(r, out, "pv_available", np.nan_to_num(available), "PV energy the irradiance offered")
        _energy(r, out, "pv_delivered", np.nan_to_num(delivered), "PV energy delivered")
        _energy(r, out, "pv_curtailment", np.clip(np.nan_to_num(available - delivered), 0.0, None),
                "available minus delivered PV power (negative steps, solver noise, count as 0)")
        total = out["pv_available_MWh"]
        out["pv_curtailment_pct"] = 100.0 * out["pv_curtailment_MWh"] / total if total > 0 else 0.0
    if r.has("feeders/battery_kw"):
        p = np.nan_to_num(r.read("feeders/battery_kw"))
        _energy(r, out, "battery_throughput", np.abs(p),
                "charged + discharged energy at the grid terminals (|feeders/battery_kw|, net per feeder)")
        _energy(r, out, "battery_discharged", np.clip(p, 0.0, None), "battery energy into the grid")
        _energy(r, out, "battery_charged", np.clip(-p, 0.0, None), "battery energy from the grid")
    if r.has("feeders/ev_kw"):
        _energy(r, out, "ev", np.nan_to_num(r.read("feeders/ev_kw")), "EV charging energy")
        if r.has("feeders/ev_owed_kwh"):
            owed = np.nan_to_num(r.read("feeders/ev_owed_kwh")[-1])
            out["ev_owed_at_end_kWh_per_copy"] = float(owed.sum())
            out["ev_owed_at_end_MWh"] = float((owed * r.multipliers()).sum() / 1000.0)
    if r.has("feeders/p_total_kw"):
        _energy(r, out, "feeder_head", np.nan_to_num(r.read("feeders/p_total_kw")), "substation energy drawn by the feeders")


def _interface(r: _Reader, out: dict) -> None:
    if r.n == 0 or not r.has("boundary/p_mw"):
        return
    p = np.nan_to_num(r.read("boundary/p_mw"))
    buses = r.labels("boundary/bus") if r.has("boundary/bus") else [str(i) for i in range(p.shape[1])]
    h = r.step_hours
    imports, exports = np.clip(p, 0.0, None).sum(axis=0) * h, np.clip(-p, 0.0, None).sum(axis=0) * h
    for bus, imp, exp in zip(buses, imports, exports):
        out[f"interface_bus{bus}_import_MWh"] = float(imp)
        out[f"interface_bus{bus}_export_MWh"] = float(exp)
    out["interface_import_MWh"] = float(imports.sum())
    out["interface_import_MWh.note"] = "boundary/p_mw > 0: energy from transmission into the feeders (all copies)"
    out["interface_export_MWh"] = float(exports.sum())
    out["interface_export_MWh.note"] = "boundary/p_mw < 0: energy the feeders fed back into transmission"
    out["interface_peak_import_MW"] = float(p.sum(axis=1).max())
    out["interface_peak_export_MW"] = float(max(0.0, -p.sum(axis=1).min()))


def _coupling_and_timing(r: _Reader, out: dict) -> None:
    if r.n == 0:
        return
    if r.has("coupling/iterations"):
        it = r.read("coupling/iterations").astype(float)
        out["coupling_iterations_mean"] = float(it.mean())
        out["coupling_iterations_max"] = float(it.max())
    if r.has("coupling/mismatch_pu"):
        out["coupling_mismatch_max_pu"] = float(np.nanmax(r.read("coupling/mismatch_pu")))
    if r.has("coupling/converged") and out.get("coupling") == "iterative":
        out["coupling_steps_not_converged"] = float((r.read("coupling/converged") == 0).sum())
    for name in ("timing/transmission_power_flow_s", "timing/transmission_wait_s"):
        if r.has(name):
            out[f"{name.replace('/', '_')[:-2]}_total_s"] = float(np.nansum(r.read(name)))
    if r.has("timing/feeders_opendss_s"):
        t = r.read("timing/feeders_opendss_s")
        per_process = np.nansum(t.reshape(t.shape[0], -1), axis=0)
        out["timing_feeders_opendss_total_s"] = float(per_process.sum())
        out["timing_feeders_opendss_total_s.note"] = "summed over feeder processes (they run in parallel)"
        out["timing_feeders_opendss_slowest_process_s"] = float(per_process.max()) if per_process.size else 0.0


def _coordinator(r: _Reader, out: dict) -> None:
    """Only when the coordinator wrote time series under `coordinator/`."""
    series = sorted(n for n in r.series_names if n.startswith("coordinator/") and n != "coordinator/status")
    if r.has("coordinator/status"):
        status = r.read("coordinator/status")
        out["coordinator_solves"] = float(np.sum(status >= 0))
        out["coordinator_failed_solves"] = float(np.sum(status == 2))
        out["coordinator_failed_solves.note"] = "no usable solution (failed or out of time): the last set-points stayed in force"
    if r.has("coordinator/planned_feeder_kw") and r.has("feeders/p_total_kw"):
        _schedule_deviation(r, out)
    for name in series:
        values = r.read(name).astype(float)
        leaf = name[len("coordinator/"):].replace("/", "_")
        units = r.units(name)
        labels: list[str] = []
        if values.ndim == 2:
            dim = r.results.run.file[name].attrs.get("dims", "").split(",")[-1]
            group = name.rsplit("/", 1)[0]
            for source in (f"{group}/{dim}", f"coordinator/{dim}"):
                if r.has(source) and len(r.read(source)) == values.shape[1]:
                    labels = r.labels(source)
                    break
            labels = labels or [str(i) for i in range(values.shape[1])]
        elif values.ndim > 2:
            values = values.reshape(values.shape[0], -1).sum(axis=1)
        columns = [(leaf, values)] if values.ndim == 1 else [(f"{leaf}_{lab}", values[:, i]) for i, lab in enumerate(labels)]
        for key, col in columns:
            if "cost" in name.lower() or "penalt" in name.lower():
                out[f"coordinator_{key}_sum{'_' + units if units else ''}"] = float(np.nansum(col))
            elif units == "s":
                stem = key[:-2] if key.endswith("_s") else key
                out[f"coordinator_{stem}_total_s"] = float(np.nansum(col))
                out[f"coordinator_{stem}_max_s"] = float(np.nanmax(col))
            elif "exchange_values" in name or "exchange_messages" in name:
                out[f"coordinator_{key}_sum"] = float(np.nansum(col))
            elif "iteration" in name.lower():
                out[f"coordinator_{key}_mean"] = float(np.nanmean(col))
                out[f"coordinator_{key}_max"] = float(np.nanmax(col))


def _schedule_deviation(r: _Reader, out: dict) -> None:
    """Interface energy against its schedule: each plan's first-interval feeder power against
    the mean realised over the steps it applied to, times the copies."""
    planned, realised = r.read("coordinator/planned_feeder_kw"), r.read("feeders/p_total_kw")
    status = r.read("coordinator/status")
    steps = int(r.results.run.attr("coordinator_interval_steps", 1))
    deviation = 0.0
    for k in np.flatnonzero(status >= 0):
        applied = realised[k + 1: k + 1 + steps]
        if status[k] == 2 or not len(applied):
            continue
        deviation += float(np.sum(np.abs(applied.mean(axis=0) - planned[k]) * r.multipliers()) * len(applied) * r.step_hours)
    out["interface_schedule_deviation_MWh"] = deviation / 1000.0
    out["interface_schedule_deviation_MWh.note"] = "|scheduled - realised mean| feeder power per plan interval x copies, summed"


def _kpis(r: _Reader) -> dict[str, KpiValue]:
    out: dict[str, KpiValue] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _run_facts(r, out)
        _losses(r, out)
        _feeder_voltages(r, out)
        _transmission(r, out)
        _ders(r, out)
        _interface(r, out)
        _coupling_and_timing(r, out)
        _coordinator(r, out)
    return out


def kpis(path: str | Path) -> dict[str, float | str]:
    """The KPIs of one run (complete or not: an incomplete run covers its recorded steps).
    Unit in each name; `<name>.note` strings explain NaN values and derived ones."""
    with _Reader(path) as r:
        return _kpis(r)


def kpi_table(paths) -> pd.DataFrame:
    """KPIs of several runs side by side: one row per KPI (first-seen order), one column per
    run labelled `scenario (file stem)`; notes are left out (see `kpis`)."""
    labels, values = [], []
    for path in paths:
        with _Reader(path) as r:
            labels.append(r.label)
            values.append(_kpis(r))
    return _table(labels, values)


def _unique(labels: list[str]) -> list[str]:
    """Column labels, primed where a label repeats (the same file twice, one name in two folders)."""
    out: list[str] = []
    for label in labels:
        while label in out:
            label += "'"
        out.append(label)
    return out


def _table(labels: list[str], values: list[dict]) -> pd.DataFrame:
    order: list[str] = []
    for v in values:
        order += [k for k in v if not k.endswith(".note") and k not in order]
    return pd.DataFrame({label: [v.get(k, math.nan) for k in order] for label, v in zip(_unique(labels), values)},
                        index=order, dtype=object)
