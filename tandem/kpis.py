"""Key performance indicators of a run, computed one way for every run and coupling scheme.

    from tandem.kpis import kpis, kpi_table
    values = kpis("runs/output/small_iterative.h5")      # {"pv_curtailment_MWh": 1.2, ...}
    table = kpi_table([path_a, path_b])                    # one column per run

Everything is read through `results.store.RunFile` (`run_kpis(run)` for a file already open,
as the report does, so that its plots reuse the reads). The unit is the last
part of each name (`_MWh`, `_kWh`, `_pu`, `_s`, `_h`, `_pct`, `_node_h`, `_branch_h`).

Feeder quantities in the file are for ONE copy of a feeder; names ending in `_per_copy`
add up one copy of every feeder, the others are system totals (each feeder times its
`feeders/multiplier`, as the transmission side sees it). Energies integrate each row
over one step (the value of row k stands for step k).

A KPI the file does not allow is NaN, with the reason under `<name>.note` (a string): the
datasets it lacks, found by looking in the file. Notes also say how a derived KPI was derived.

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

from grid.ders.registry import READINGS
from results.store import RunFile
from tandem import extremes
from tandem.extremes import Extreme

BAND = (0.95, 1.05)  # the band the recorder counts `feeders/nodes_outside_band` against
OVERLOAD_PCT = 100.0

KpiValue = float | str


def feeder_multipliers(run: RunFile) -> np.ndarray:
    """Copies of each feeder behind its bus (`feeders/multiplier`; 1 each in files without it)."""
    if run.has("feeders/multiplier"):
        return np.asarray(run.read("feeders/multiplier"), dtype=float)
    return np.ones(len(run.read("feeders/name")) if run.has("feeders/name") else 0)


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


def _run_facts(run: RunFile, out: dict) -> None:
    out["scenario"] = run.name
    out["file"] = str(run.path)
    out["coupling"] = str(run.scenario.get("coupling", {}).get("mode", ""))
    out["complete"] = "yes" if run.complete else "no"
    if run.error:
        out["error"] = run.error
    out["steps"] = float(run.n_steps)
    out["steps_planned"] = float(run.attr("n_steps_planned", run.n_steps))
    out["simulated_h"] = run.n_steps * run.step_hours
    out["step_h"] = run.step_hours
    out["feeders"] = float(len(run.read("feeders/name"))) if run.has("feeders/name") else 0.0
    started, finished = str(run.attr("started_at", "")), str(run.attr("finished_at", ""))
    if started and finished:
        out["wall_time_s"] = (pd.Timestamp(finished) - pd.Timestamp(started)).total_seconds()
        out["wall_time_s.note"] = "finished_at - started_at of the recorder, 1 s resolution"
    else:
        _nan(out, "wall_time_s", "finished_at not set: the recorder did not close the file")


TRANSMISSION_LOSS_INPUTS = ("transmission/vm_pu", "transmission/va_deg", "transmission/bus")


def run_transmission_losses(run: RunFile) -> tuple[np.ndarray | None, str]:
    """Transmission losses (MW) of each recorded step, derived from the file's bus voltages
    (`transmission_losses_mw`), and a note saying how; (None, why not) when the file does not allow it."""
    network = run.scenario.get("transmission", {}).get("network")
    absent = [name for name in TRANSMISSION_LOSS_INPUTS if not run.has(name)]
    if not network or absent or run.n_steps == 0:
        why = ("the scenario names no transmission network" if not network
               else f"{', '.join(f'`{n}`' for n in absent)} not in this file" if absent else "no step recorded")
        return None, f"cannot be derived from the bus voltages: {why}"
    try:
        losses = transmission_losses_mw(network, run.labels("transmission/bus"), run.read("transmission/vm_pu"),
                                        run.read("transmission/va_deg"))
    except Exception as exc:  # network file moved, internal buses, ...
        return None, f"cannot be derived from the bus voltages: {exc}"
    return losses, (
        f"derived: sum over branches of Re(S_from + S_to) from the recorded bus voltage phasors and the "
        f"branch admittances of network {Path(str(network)).name!r} (generator outputs are not in the "
        f"results file, so generation - load cannot be used)"
    )


# -- the value of the energy stored at the end ---------------------------------------------


@lru_cache(maxsize=8)
def _slack_model(network: str):
    """(baseMVA, Ybus, lookup of pandapower bus index -> internal bus, internal buses, slack's
    internal bus, its cost c1, c2), or a string saying why the slack's marginal cost cannot be
    read off the bus voltages."""
    import pandapower as pp
    from pandapower.pypower.makeYbus import makeYbus

    from grid.networks import load_network

    net = load_network(network)
    grids = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if len(grids) != 1:
        return f"the network has {len(grids)} slack units in service (one is needed)"
    bus = int(grids.bus.iloc[0])
    for table in ("load", "sgen", "gen", "storage"):
        elements = net[table]
        if len(elements) and ((elements.bus == bus) & elements.in_service.astype(bool)).any():
            return f"the slack bus {bus} also carries a {table}, whose power the results file does not hold"
    costs = net.poly_cost[(net.poly_cost.et == "ext_grid") & (net.poly_cost.element == grids.index[0])] \
        if "poly_cost" in net else []
    if not len(costs):
        return "the network gives its slack unit no polynomial cost"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    ppc = net._ppc
    ybus, _, _ = makeYbus(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    lookup = net._pd2ppc_lookups["bus"]
    c1, c2 = (float(costs[c].iloc[0]) for c in ("cp1_eur_per_mw", "cp2_eur_per_mw2"))
    return float(ppc["baseMVA"]), ybus.tocsr(), lookup, int(ppc["bus"].shape[0]), int(lookup[bus]), bus, c1, c2


def slack_power_mw(network: str, bus_names, vm_pu: np.ndarray, va_deg: np.ndarray) -> np.ndarray:
    """Active power (MW) of the network's slack unit at each row, from the bus voltage phasors
    [time, bus]: the injection Re(V conj(Ybus V)) at its bus, which carries nothing else
    (`_slack_model` refuses networks where it does). Equal to pandapower's res_ext_grid.p_mw."""
    model = _slack_model(network)
    if isinstance(model, str):
        raise ValueError(model)
    base, ybus, lookup, n_internal, slack, _, _, _ = model
    internal = lookup[np.asarray([int(b) for b in bus_names])]
    v = np.zeros((vm_pu.shape[0], n_internal), dtype=complex)
    v[:, internal] = np.nan_to_num(vm_pu * np.exp(1j * np.deg2rad(va_deg)))
    current = (ybus[slack] @ v.T).ravel()
    return (v[:, slack] * np.conj(current)).real * base


def _marginal_price(run: RunFile, network: str) -> tuple[np.ndarray | None, str]:
    """The slack unit's marginal cost c1 + 2 c2 P (currency per MWh) at each recorded step,
    or (None, why not)."""
    absent = [name for name in TRANSMISSION_LOSS_INPUTS if not run.has(name)]
    if absent:
        return None, f"{', '.join(f'`{n}`' for n in absent)} not in this file"
    try:
        p = slack_power_mw(network, run.labels("transmission/bus"), run.read("transmission/vm_pu"),
                           run.read("transmission/va_deg"))
    except Exception as exc:  # network file moved, another slack arrangement, ...
        return None, str(exc)
    _, _, _, _, _, bus, c1, c2 = _slack_model(network)
    return c1 + 2.0 * c2 * p, (
        f"marginal cost c1 + 2 c2 P of the slack unit (bus {bus}) at each step's operating point, P from the recorded "
        f"bus voltages: in a power flow the slack serves one more MWh, so this is what a MWh more or less cost in that step"
    )


def battery_energy_change_kwh(run: RunFile) -> tuple[np.ndarray, str] | None:
    """Energy stored in each feeder's batteries at the end of the run minus at its start (kWh,
    one copy per feeder, [feeder]): (SOC after the last recorded step - the scenario's initial
    SOC) x each battery's kWh rating; None without batteries. SOC is energy in the cells, so
    the change is what the batteries could give back before discharge losses."""
    if not run.has("feeders/name") or run.n_steps == 0:
        return None
    names = run.labels("feeders/name")
    specs = run.scenario.get("feeders", [])
    change = np.zeros(len(names))
    found = False
    for i, name in enumerate(names):
        soc, kwh = f"devices/{name}/battery_soc", f"devices/{name}/battery_kwh"
        if not (run.has(soc) and run.has(kwh)):
            continue
        spec = specs[i].get("battery", {}) if i < len(specs) else {}
        if "soc_initial" not in spec:
            return np.full(len(names), np.nan), f"the scenario does not say feeder {name!r}'s initial SOC"
        end = np.asarray(run.read(soc), dtype=float)[-1]
        change[i] = float(np.sum((end - float(spec["soc_initial"])) * np.asarray(run.read(kwh), dtype=float)))
        found = True
    if not found:
        return None
    return change, "(SOC after the last step - scenario's soc_initial) x battery_kwh, summed per feeder"


def _storage(run: RunFile, out: dict) -> None:
    """The change of energy stored in batteries and its value at the run's average marginal price."""
    found = battery_energy_change_kwh(run)
    if found is None:
        return
    per_copy, note = found
    out["battery_energy_change_kWh_per_copy"] = float(per_copy.sum())
    out["battery_energy_change_MWh"] = float((per_copy * feeder_multipliers(run)).sum() / 1000.0)
    out["battery_energy_change_MWh.note"] = note + "; system = each feeder x its multiplier; + ended fuller"
    network = run.scenario.get("transmission", {}).get("network")
    price, why = _marginal_price(run, network) if network else (None, "the scenario names no transmission network")
    if price is None or not np.isfinite(price).all():
        _nan(out, "marginal_price_mean", f"cannot be derived: {why}" if price is None else "non-finite bus voltages")
        _nan(out, "storage_value", "no marginal price: " + str(out["marginal_price_mean.note"]))
        return
    out["marginal_price_mean"] = float(price.mean())
    out["marginal_price_mean.note"] = "currency per MWh, mean over the steps of the " + why
    out["storage_value"] = out["battery_energy_change_MWh"] * out["marginal_price_mean"]
    out["storage_value.note"] = (
        "battery_energy_change_MWh x marginal_price_mean: what the energy a run leaves in (or takes out of) its "
        "batteries is worth, so a run that bought energy to keep it is not counted dearer for it"
    )


# -- realised use of the limits the coordinator prices ----------------------------------------


@lru_cache(maxsize=8)
def branch_ratings_mva(network: str, ratings: str = "case") -> dict[str, float]:
    """Each branch's rating (MVA) by its recorded label ("line:<index>", "trafo:<index>"), with the
    scenario's `transmission.ratings`: a line's max_i_ka x sqrt(3) x from-bus kV x parallel x df,
    a transformer's sn_mva x parallel (what loading_percent is against)."""
    from grid.networks import load_network
    from grid.ratings import apply_ratings

    net = load_network(network)
    apply_ratings(net, ratings, network)
    kv = net.bus.vn_kv
    out = {f"line:{i}": float(r.max_i_ka * math.sqrt(3) * kv.at[int(r.from_bus)] * r.parallel * r.df) for i, r in net.line.iterrows()}
    out.update({f"trafo:{i}": float(r.sn_mva * r.parallel) for i, r in net.trafo.iterrows()})
    return out


def _realised_violations(run: RunFile, out: dict) -> None:
    """The realised counterparts of the coordinator's soft-limit measures, so they can be priced
    as its penalties are: feeder voltages outside the band in pu^2 h (on v^2, per node and phase,
    as the LinDist3Flow slacks) and branch flow above ratings in MVAh."""
    if run.n_steps == 0:
        return
    lo, hi = run.scenario.get("coordination", {}).get("voltage_limits", BAND)
    names = run.labels("feeders/name") if run.has("feeders/name") else []
    recorded = [name for name in names if run.has(f"feeders/node_vm_pu/{name}")]
    if names and len(recorded) == len(names):
        total = 0.0
        for name, k in zip(names, feeder_multipliers(run)):
            w = np.nan_to_num(run.read(f"feeders/node_vm_pu/{name}").astype(float)) ** 2
            outside = np.where(w > 0, np.clip(lo ** 2 - w, 0.0, None) + np.clip(w - hi ** 2, 0.0, None), 0.0)
            total += float(k * outside.sum() * run.step_hours)
        out["voltage_violation_pu2h"] = total
        out["voltage_violation_pu2h.note"] = (f"sum over steps, nodes and phases of (v^2 below {lo}^2 or above {hi}^2) x step hours, "
                                              "each feeder x its multiplier: the measure the coordinator's voltage penalty prices")
    elif names:
        _nan(out, "voltage_violation_pu2h", "node voltages not recorded (output.node_voltages off)")
    network = run.scenario.get("transmission", {}).get("network")
    if network and run.has("transmission/loading_percent") and run.has("transmission/branch"):
        try:
            ratings = branch_ratings_mva(str(network), str(run.scenario["transmission"].get("ratings", "case")))
            rating = np.array([ratings[label] for label in run.labels("transmission/branch")])
        except Exception as exc:  # network file moved, ...
            _nan(out, "transmission_overload_MVAh", f"no branch ratings: {exc}")
            return
        loading = np.nan_to_num(run.read("transmission/loading_percent")) / 100.0
        out["transmission_overload_MVAh"] = float((np.clip(loading - 1.0, 0.0, None) * rating).sum() * run.step_hours)
        out["transmission_overload_MVAh.note"] = "sum over steps and branches of (loading - rating) above 100 %, MVA x step hours"


def _losses(run: RunFile, out: dict) -> None:
    losses, note = run_transmission_losses(run)
    if losses is None:
        _nan(out, "transmission_losses_MWh", note)
    else:
        out["transmission_losses_MWh"] = float(losses.sum() * run.step_hours)
        out["transmission_losses_MWh.note"] = note
        out["transmission_losses_peak_MW"] = float(np.nanmax(losses))
    if run.has("feeders/losses_kw") and run.n_steps:
        per_copy = run.read("feeders/losses_kw")  # [time, feeder], kW of one copy
        out["distribution_losses_MWh"] = float((per_copy * feeder_multipliers(run)).sum() * run.step_hours / 1000.0)
        out["distribution_losses_MWh.note"] = "`feeders/losses_kw` (OpenDSS circuit losses) of each step; system = each feeder x its multiplier"
        out["distribution_losses_MWh_per_copy"] = float(per_copy.sum() * run.step_hours / 1000.0)
    else:
        why = "no step recorded" if run.has("feeders/losses_kw") else "`feeders/losses_kw` (per-feeder losses) is not in this file"
        _nan(out, "distribution_losses_MWh", why)


def _put(out: dict, prefix: str, unit: str, found: Extreme | None) -> None:
    """`<prefix>_<unit>`, `<prefix>_where` and `<prefix>_time` of an extreme the file has."""
    if found is not None:
        out[f"{prefix}_{unit}"] = found.value
        out[f"{prefix}_where"] = found.where
        out[f"{prefix}_time"] = found.time


def _feeder_voltages(run: RunFile, out: dict) -> None:
    if not run.has("feeders/vmin_pu") or run.n_steps == 0:
        return
    for kind in ("min", "max"):
        _put(out, f"feeder_v{kind}", "pu", extremes.feeder_voltage(run, kind))
    if run.has("feeders/nodes_outside_band"):
        outside = run.read("feeders/nodes_outside_band").astype(float)
        per_feeder = outside.sum(axis=0) * run.step_hours
        out["voltage_violation_node_h_per_copy"] = float(per_feeder.sum())
        out["voltage_violation_node_h"] = float((per_feeder * feeder_multipliers(run)).sum())
        out["voltage_violation_node_h.note"] = (
            f"nodes outside {BAND[0]}-{BAND[1]} pu x step hours; system = each feeder x its multiplier"
        )
        out["voltage_violation_steps"] = float((outside.sum(axis=1) > 0).sum())


def _transmission(run: RunFile, out: dict) -> None:
    if run.n_steps == 0:
        return
    for kind in ("min", "max"):
        _put(out, f"transmission_v{kind}", "pu", extremes.transmission_voltage(run, kind))
    if run.has("transmission/loading_percent"):
        _put(out, "branch_loading_max", "pct", extremes.branch_loading(run))
        over = np.nan_to_num(run.read("transmission/loading_percent")) > OVERLOAD_PCT
        out["overload_branch_h"] = float(over.sum() * run.step_hours)
        out["overload_branch_h.note"] = f"branch loading > {OVERLOAD_PCT:.0f} %: hours x branches"
        out["overloaded_branches"] = float(over.any(axis=0).sum())
    if run.has("transmission/generation_cost_per_h"):
        rate = run.read("transmission/generation_cost_per_h")
        out["generation_cost"] = float(np.nansum(rate) * run.step_hours)
        out["generation_cost.note"] = "the network's polynomial generator costs at each step's operating point, x step length"


def _energy(run: RunFile, out: dict, name: str, per_step_kw: np.ndarray, what: str) -> None:
    """kWh per copy (sum over feeders, one copy each) and MWh for the system."""
    m = feeder_multipliers(run)
    per_feeder_kwh = per_step_kw.sum(axis=0) * run.step_hours
    out[f"{name}_kWh_per_copy"] = float(per_feeder_kwh.sum())
    out[f"{name}_MWh"] = float((per_feeder_kwh * m).sum() / 1000.0)
    out[f"{name}_MWh.note"] = what + "; system = each feeder x its multiplier"


# What `grid.ders.kind.Energy.part` names.
ENERGY_PARTS = {
    "net": lambda v: v,
    "positive": lambda v: np.clip(v, 0.0, None),
    "negative": lambda v: np.clip(-v, 0.0, None),
    "abs": np.abs,
}


def _ders(run: RunFile, out: dict) -> None:
    if run.n_steps == 0:
        return
    if run.has("feeders/pv_available_kw") and run.has("feeders/pv_kw"):
        available, delivered = run.read("feeders/pv_available_kw"), run.read("feeders/pv_kw")
        _energy(run, out, "pv_available", np.nan_to_num(available), "PV energy the irradiance offered")
        _energy(run, out, "pv_delivered", np.nan_to_num(delivered), "PV energy delivered")
        _energy(run, out, "pv_curtailment", np.clip(np.nan_to_num(available - delivered), 0.0, None),
                "available minus delivered PV power (negative steps, solver noise, count as 0)")
        total = out["pv_available_MWh"]
        out["pv_curtailment_pct"] = 100.0 * out["pv_curtailment_MWh"] / total if total > 0 else 0.0
    for reading in READINGS:  # the energy KPIs each DER kind declares on its readings
        if reading.energy and run.has(f"feeders/{reading.name}"):
            values = np.nan_to_num(run.read(f"feeders/{reading.name}"))
            for kpi in reading.energy:
                _energy(run, out, kpi.name, ENERGY_PARTS[kpi.part](values), kpi.description)
    if run.has("feeders/ev_owed_kwh"):
        owed = np.nan_to_num(run.read("feeders/ev_owed_kwh")[-1])
        out["ev_owed_at_end_kWh_per_copy"] = float(owed.sum())
        out["ev_owed_at_end_MWh"] = float((owed * feeder_multipliers(run)).sum() / 1000.0)
    if run.has("feeders/p_total_kw"):
        _energy(run, out, "feeder_head", np.nan_to_num(run.read("feeders/p_total_kw")), "substation energy drawn by the feeders")


def _interface(run: RunFile, out: dict) -> None:
    if run.n_steps == 0 or not run.has("boundary/p_mw"):
        return
    p = np.nan_to_num(run.read("boundary/p_mw"))
    buses = run.labels("boundary/bus") if run.has("boundary/bus") else [str(i) for i in range(p.shape[1])]
    h = run.step_hours
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


def coupling_kpis(run: RunFile) -> dict[str, float]:
    """Transmission solves per step, the largest final boundary mismatch and, in iterative
    coupling, the steps that did not converge."""
    out: dict[str, float] = {}
    if run.n_steps == 0:
        return out
    if run.has("coupling/iterations"):
        it = run.read("coupling/iterations").astype(float)
        out["coupling_iterations_mean"] = float(it.mean())
        out["coupling_iterations_max"] = float(it.max())
    if run.has("coupling/mismatch_pu"):
        out["coupling_mismatch_max_pu"] = float(np.nanmax(run.read("coupling/mismatch_pu")))
    if run.has("coupling/converged") and run.scenario.get("coupling", {}).get("mode") == "iterative":
        out["coupling_steps_not_converged"] = float((run.read("coupling/converged") == 0).sum())
    return out


def _timing(run: RunFile, out: dict) -> None:
    if run.n_steps == 0:
        return
    for name in ("timing/transmission_power_flow_s", "timing/transmission_wait_s"):
        if run.has(name):
            out[f"{name.replace('/', '_')[:-2]}_total_s"] = float(np.nansum(run.read(name)))
    if run.has("timing/feeders_opendss_s"):
        t = run.read("timing/feeders_opendss_s")
        per_process = np.nansum(t.reshape(t.shape[0], -1), axis=0)
        out["timing_feeders_opendss_total_s"] = float(per_process.sum())
        out["timing_feeders_opendss_total_s.note"] = "summed over feeder processes (they run in parallel)"
        out["timing_feeders_opendss_slowest_process_s"] = float(per_process.max()) if per_process.size else 0.0


def _coordinator(run: RunFile, out: dict) -> None:
    """Only when the coordinator wrote time series under `coordinator/`."""
    recorded = run.names() if run.n_steps else []
    series = [n for n in recorded if n.startswith("coordinator/") and n != "coordinator/status"]
    if run.has("coordinator/status"):
        status = run.read("coordinator/status")
        out["coordinator_solves"] = float(np.sum(status >= 0))
        out["coordinator_failed_solves"] = float(np.sum(status == 2))
        out["coordinator_failed_solves.note"] = "no usable solution (failed or out of time): the last set-points stayed in force"
    if run.has("coordinator/planned_feeder_kw") and run.has("feeders/p_total_kw"):
        _schedule_deviation(run, out)
    for name in series:
        values = run.read(name).astype(float)
        leaf = name[len("coordinator/"):].replace("/", "_")
        units = run.units(name)
        labels: list[str] = []
        if values.ndim == 2:
            dim = run.dims(name)[-1]
            group = name.rsplit("/", 1)[0]
            for source in (f"{group}/{dim}", f"coordinator/{dim}"):
                if run.has(source) and len(run.read(source)) == values.shape[1]:
                    labels = run.labels(source)
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


def _schedule_deviation(run: RunFile, out: dict) -> None:
    """Interface energy against its schedule: each plan's first-interval feeder power against
    the mean realised over the steps it applied to, times the copies."""
    planned, realised = run.read("coordinator/planned_feeder_kw"), run.read("feeders/p_total_kw")
    status = run.read("coordinator/status")
    steps = int(run.attr("coordinator_interval_steps", 1))
    deviation = 0.0
    for k in np.flatnonzero(status >= 0):
        applied = realised[k + 1: k + 1 + steps]
        if status[k] == 2 or not len(applied):
            continue
        deviation += float(np.sum(np.abs(applied.mean(axis=0) - planned[k]) * feeder_multipliers(run)) * len(applied) * run.step_hours)
    out["interface_schedule_deviation_MWh"] = deviation / 1000.0
    out["interface_schedule_deviation_MWh.note"] = "|scheduled - realised mean| feeder power per plan interval x copies, summed"


def run_kpis(run: RunFile) -> dict[str, KpiValue]:
    """The KPIs of an open run (see `kpis`)."""
    out: dict[str, KpiValue] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _run_facts(run, out)
        _losses(run, out)
        _feeder_voltages(run, out)
        _transmission(run, out)
        _ders(run, out)
        _storage(run, out)
        _realised_violations(run, out)
        _interface(run, out)
        out.update(coupling_kpis(run))
        _timing(run, out)
        _coordinator(run, out)
    return out


def kpis(path: str | Path) -> dict[str, KpiValue]:
    """The KPIs of one run (complete or not: an incomplete run covers its recorded steps).
    Unit in each name; `<name>.note` strings explain NaN values and derived ones."""
    with RunFile(path) as run:
        return run_kpis(run)


def kpi_table(paths) -> pd.DataFrame:
    """KPIs of several runs side by side: one row per KPI (first-seen order), one column per
    run labelled `scenario (file stem)`; notes are left out (see `kpis`)."""
    runs = [RunFile(path) for path in paths]
    try:
        return kpi_frame(unique_labels(runs), [run_kpis(run) for run in runs])
    finally:
        for run in runs:
            run.close()


def unique_labels(runs: list[RunFile]) -> list[str]:
    """The runs' labels, primed where one repeats (the same file twice, one name in two folders)."""
    out: list[str] = []
    for run in runs:
        label = run.label
        while label in out:
            label += "'"
        out.append(label)
    return out


def kpi_frame(labels: list[str], values: list[dict[str, KpiValue]]) -> pd.DataFrame:
    """One row per KPI (first-seen order), one column per label; notes left out."""
    order: list[str] = []
    for v in values:
        order += [k for k in v if not k.endswith(".note") and k not in order]
    return pd.DataFrame({label: [v.get(k, math.nan) for k in order] for label, v in zip(labels, values)},
                        index=order, dtype=object)
