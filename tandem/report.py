"""`tandem report`: one self-contained HTML page for one or several runs.

    from tandem.report import write_report
    write_report([Path("a.h5"), Path("b.h5")], Path("compare.html"))

The page holds the KPI table (`tandem.kpis`, one column per run), the time series as
interactive bokeh panels (`tandem.panels`: every step, zoom and pan in time; bokeh's
JavaScript and the data are inside the page) and the heat maps and the histogram as base64
PNG images (matplotlib, Agg backend). Nothing is loaded from the network.
With several runs every time series is overlaid on the same axes, one line per run,
labelled `scenario (file stem)`; runs that start at different times share an axis of
hours since their start. An incomplete run is shown with an "incomplete: <error>" banner.

Speed: each plot reads only the datasets it needs (once per run: the KPIs and the plots
share the reads of the open `RunFile`). Heat maps are drawn at most `MAX_BINS` time bins
wide: each bin keeps its extreme, so no peak is lost.
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bokeh.model import Model

from grid.ders.registry import READINGS
from results.store import RunFile
from tandem import panels
from tandem.kpis import (
    BAND,
    OVERLOAD_PCT,
    feeder_multipliers,
    kpi_frame,
    run_kpis,
    run_transmission_losses,
    unique_labels,
)

MAX_BINS = 600  # time bins of a heat map (about one per pixel column)
DPI = 80
WIDTH_IN = 12.0
MAX_DEVICE_LINES = 40  # above this many batteries, SOC is drawn as a min/mean/max band


# -- heat-map binning ---------------------------------------------------------------------


def _bin_size(n: int) -> int:
    return max(1, math.ceil(n / MAX_BINS))


def _binned(y: np.ndarray, size: int, how) -> np.ndarray:
    """Aggregate along axis 0 in bins of `size` rows (the last bin may be shorter)."""
    if size == 1:
        return y
    n = y.shape[0]
    full = (n // size) * size
    head = how(y[:full].reshape(n // size, size, *y.shape[1:]), axis=1)
    if full == n:
        return head
    return np.concatenate([head, how(y[full:], axis=0)[None]], axis=0)


def envelope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x at each bin start, bin minimum, bin maximum) of y [time, ...]."""
    size = _bin_size(len(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return x[::size], _binned(y, size, np.nanmin), _binned(y, size, np.nanmax)


# -- runs -----------------------------------------------------------------------------------


class _Run:
    """One run on the page: its file, colour and dash, and its x values for either library."""

    def __init__(self, run: RunFile, label: str, color: str, dash: str, relative: bool):
        self.r = run
        self.label = label
        self.color = color
        self.dash = dash
        self.dx = run.step_hours if relative else run.step_hours / 24.0  # one step in matplotlib x units
        if relative:
            hours = run.read("time/seconds") / 3600.0
            self.x, self.series = hours, panels.Series(hours)
        else:
            import matplotlib.dates as mdates

            self.x = mdates.date2num(run.times.values)
            # bokeh's datetime axis counts milliseconds since 1970 (the naive times are shown as they are)
            self.series = panels.Series(run.times.values.astype("datetime64[ms]").astype(np.int64).astype(float))

    def has(self, *names: str) -> bool:
        return all(self.r.has(n) for n in names)

    def read(self, name: str) -> np.ndarray:
        return self.r.read(name)

    def line(self, fig, key: str, y: np.ndarray, label: str | None, color: str | None = None, dash: str | None = None,
             width: float = 1.2, markers: bool = False) -> None:
        """A line in the run's colour and dash unless told otherwise; `key` names the data column."""
        panels.line(fig, self.series, key, y, label, color or self.color, dash or self.dash, width, markers)

    def band(self, fig, key: str, lo: np.ndarray, hi: np.ndarray, label: str | None, alpha: float = 0.35) -> None:
        panels.band(fig, self.series, key, lo, hi, label, self.color, alpha)


def _linked(relative: bool, *specs: tuple[str, str], log: tuple[bool, ...] = ()) -> list:
    """Time-series panels (title, y label) that zoom and pan together."""
    figs: list = []
    for i, (title, ylabel) in enumerate(specs):
        figs.append(panels.panel(title, ylabel, relative, x_range=figs[0].x_range if figs else None,
                                 log=bool(log[i]) if i < len(log) else False))
    return figs


def _style_time_axis(ax, relative: bool) -> None:
    if relative:
        if ax.get_subplotspec().is_last_row():
            ax.set_xlabel("hours since the run's start")
    else:
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator(maxticks=10)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, alpha=0.3)


# -- plots: each returns a figure (bokeh: interactive, matplotlib: PNG), or None when no run has the data


def plot_boundary(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("boundary/vm_pu", "boundary/p_mw", "boundary/q_mvar")]
    if not runs:
        return None
    single = len(runs) == 1
    sums = "" if single else " (sum over boundary buses)"
    a_v, a_p, a_q = _linked(relative, ("Boundary bus voltage magnitude", "V (pu)"),
                            ("Active power into the feeders at the boundary" + sums, "P (MW)"),
                            ("Reactive power into the feeders at the boundary" + sums, "Q (Mvar)"))
    for u in runs:
        buses = u.r.labels("boundary/bus") if u.has("boundary/bus") else []
        vm, p, q = u.read("boundary/vm_pu"), u.read("boundary/p_mw"), u.read("boundary/q_mvar")
        for j in range(vm.shape[1]):
            name = f"bus {buses[j]}" if j < len(buses) else f"#{j}"
            if single:
                color = panels.COLORS[j % len(panels.COLORS)]
                u.line(a_v, f"boundary/vm_pu[{j}]", vm[:, j], name, color)
                u.line(a_p, f"boundary/p_mw[{j}]", p[:, j], name, color)
                u.line(a_q, f"boundary/q_mvar[{j}]", q[:, j], name, color)
            else:
                u.line(a_v, f"boundary/vm_pu[{j}]", vm[:, j], u.label)
        if single and p.shape[1] > 1:
            u.line(a_p, "boundary/p_mw[sum]", p.sum(axis=1), "all boundary buses", "black", width=1.6)
            u.line(a_q, "boundary/q_mvar[sum]", q.sum(axis=1), "all boundary buses", "black", width=1.6)
        if not single:
            u.line(a_p, "boundary/p_mw[sum]", p.sum(axis=1), u.label)
            u.line(a_q, "boundary/q_mvar[sum]", q.sum(axis=1), u.label)
    return panels.stack([a_v, a_p, a_q])


def plot_transmission(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("transmission/vm_pu")]
    if not runs:
        return None
    losses = {u.label: run_transmission_losses(u.r)[0] for u in runs}
    with_losses = [u for u in runs if losses[u.label] is not None]
    specs = [("Transmission bus voltages: range over all buses", "V (pu)")]
    if with_losses:
        specs.append(("Transmission losses (derived from recorded bus voltages and the network's branch admittances)", "MW"))
    figs = _linked(relative, *specs)
    for u in runs:
        vm = u.read("transmission/vm_pu")
        u.band(figs[0], "transmission/vm_pu[range]", vm.min(axis=1), vm.max(axis=1), f"{u.label}: min-max over buses")
    for v in BAND:
        panels.hline(figs[0], v)
    for u in with_losses:
        u.line(figs[1], "derived/transmission_losses_mw", losses[u.label], u.label)
    return panels.stack(figs)


def plot_feeder_envelopes(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("feeders/vmin_pu", "feeders/vmax_pu", "feeders/name")]
    if not runs:
        return None
    feeders: list[str] = []
    for u in runs:
        feeders += [f for f in u.r.labels("feeders/name") if f not in feeders]
    columns = 1 if len(feeders) == 1 else 2 if len(feeders) <= 4 else 4
    figs: list = []
    for i, feeder in enumerate(feeders):
        first = figs[0] if figs else None
        fig = panels.panel(feeder, "V (pu)" if i % columns == 0 else "", relative,
                           x_range=first.x_range if first else None, width=panels.WIDTH // columns - 50, height=140)
        if first:
            fig.y_range = first.y_range
        for u in runs:
            names = u.r.labels("feeders/name")
            if feeder in names:
                j = names.index(feeder)
                u.band(fig, f"feeders/v_pu[{j}]", u.read("feeders/vmin_pu")[:, j], u.read("feeders/vmax_pu")[:, j],
                       u.label if len(runs) > 1 and i == 0 else None, alpha=0.45)
        for v in BAND:
            panels.hline(fig, v)
        figs.append(fig)
    return panels.stack(figs, columns)


def plot_heat_map(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("feeders/vmin_pu", "feeders/vmax_pu", "feeders/name") and u.r.n_steps > 0]
    if not runs:
        return None
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    n_f = max(len(u.r.labels("feeders/name")) for u in runs)
    height = max(2.2, 0.18 * n_f + 1.2)
    fig = Figure(figsize=(WIDTH_IN, height * len(runs) + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(runs), 2, squeeze=False)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.90, vmax=1.10)
    image = None
    for row, u in zip(axes, runs):
        names = u.r.labels("feeders/name")
        for ax, kind in zip(row, ("vmin", "vmax")):
            xb, lo, hi = envelope(u.x, u.read(f"feeders/{kind}_pu"))
            values = lo if kind == "vmin" else hi
            x_end = u.x[-1] + u.dx
            image = ax.imshow(values.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=norm,
                              extent=(xb[0], x_end, len(names) - 0.5, -0.5))
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels(names, fontsize=6 if len(names) > 12 else 7)
            title = "lowest node voltage per feeder" if kind == "vmin" else "highest node voltage per feeder"
            ax.set_title(f"{u.label}: {title}" if len(runs) > 1 else title, fontsize=9)
            _style_time_axis(ax, relative)
            ax.grid(False)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="pu", shrink=0.9)
    return fig


def plot_node_heat_map(runs: list[_Run], relative: bool):
    """Every node's voltage over time (time binned, each bin's lowest value): feeders stacked."""
    runs = [u for u in runs if u.r.n_steps > 0 and u.has("feeders/name")
            and all(u.has(f"feeders/node_vm_pu/{f}") for f in u.r.labels("feeders/name"))]
    if not runs:
        return None
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 3.6 * len(runs) + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(runs), 1, squeeze=False)[:, 0]
    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.90, vmax=1.10)
    image = None
    for ax, u in zip(axes, runs):
        names = list(u.r.labels("feeders/name"))
        blocks = [envelope(u.x, u.read(f"feeders/node_vm_pu/{f}"))[1] for f in names]  # bin minima [bin, node]
        xb = envelope(u.x, u.read(f"feeders/node_vm_pu/{names[0]}")[:, :1])[0]
        values = np.concatenate(blocks, axis=1)
        edges = np.cumsum([0] + [b.shape[1] for b in blocks])
        image = ax.imshow(values.T, aspect="auto", interpolation="nearest", cmap="RdBu_r", norm=norm,
                          extent=(xb[0], u.x[-1] + u.dx, values.shape[1] - 0.5, -0.5))
        for edge in edges[1:-1]:
            ax.axhline(edge - 0.5, color="black", linewidth=0.6)
        ax.set_yticks((edges[:-1] + edges[1:]) / 2 - 0.5)
        ax.set_yticklabels(names, fontsize=6 if len(names) > 12 else 7)
        title = "node voltages (lowest in each time bin), feeders stacked"
        ax.set_title(f"{u.label}: {title}" if len(runs) > 1 else title, fontsize=9)
        _style_time_axis(ax, relative)
        ax.grid(False)
    fig.colorbar(image, ax=list(axes), label="pu", shrink=0.9)
    return fig



def plot_violations(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("feeders/nodes_outside_band")]
    if not runs:
        return None
    a_n, a_c = _linked(relative,
                       (f"Nodes outside {BAND[0]}-{BAND[1]} pu (one copy of each feeder, summed over feeders)", "nodes"),
                       ("Voltage-violation node-hours, cumulative (system: each feeder x its multiplier)", "node-hours"))
    for u in runs:
        outside = u.read("feeders/nodes_outside_band").astype(float)
        u.line(a_n, "feeders/nodes_outside_band[sum]", outside.sum(axis=1), u.label)
        system = (outside * feeder_multipliers(u.r)).sum(axis=1) * u.r.step_hours
        u.line(a_c, "feeders/nodes_outside_band[node_h]", np.cumsum(system), u.label)
    return panels.stack([a_n, a_c])


def plot_branch_loading(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("transmission/loading_percent") and u.read("transmission/loading_percent").size]
    if not runs:
        return None
    single = len(runs) == 1
    specs = [("Highest branch loading (%)", "%")]
    if single:
        specs.append(("The 10 branches with the highest peak loading (%)", "%"))
    figs = _linked(relative, *specs)
    for u in runs:
        u.line(figs[0], "transmission/loading_percent[max]", np.nanmax(u.read("transmission/loading_percent"), axis=1), u.label)
    if single:
        u = runs[0]
        loading = u.read("transmission/loading_percent")
        branches = u.r.labels("transmission/branch") if u.has("transmission/branch") else [str(i) for i in range(loading.shape[1])]
        top = np.argsort(-np.nan_to_num(np.nanmax(loading, axis=0), nan=-1))[:10]
        for rank, j in enumerate(top):
            u.line(figs[1], f"transmission/loading_percent[{j}]", loading[:, j],
                   f"{branches[j]} (peak {np.nanmax(loading[:, j]):.0f} %)", panels.COLORS[rank % len(panels.COLORS)], "solid")
    for fig in figs:
        panels.hline(fig, OVERLOAD_PCT, "red")
    return panels.stack(figs)


def plot_loading_histogram(runs: list[_Run], relative: bool):
    """All branches and steps of each run in one histogram (not a time series: a PNG)."""
    runs = [u for u in runs if u.has("transmission/loading_percent") and u.read("transmission/loading_percent").size]
    if not runs:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 2.8), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for u in runs:
        loading = u.read("transmission/loading_percent")
        ax.hist(loading[np.isfinite(loading)], bins=60, histtype="step", color=u.color, label=u.label, log=True, lw=1.2)
    ax.axvline(OVERLOAD_PCT, color="red", ls="--", lw=0.8)
    ax.set_title("Branch loading, all branches and steps (histogram, log count)")
    ax.set_xlabel("loading (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _system_mw(u: _Run, name: str) -> np.ndarray:
    """Sum over feeders of multiplier x per-copy kW, in MW."""
    return (np.nan_to_num(u.read(name)) * feeder_multipliers(u.r)).sum(axis=1) / 1000.0


def _has_der(u: _Run) -> bool:
    return any(_nonzero(u, n) for n in ("feeders/pv_available_kw", "feeders/battery_kw", "feeders/ev_kw", *DISPATCHABLE))


# What the coordinator dispatches besides storage and PV shares a panel: the readings whose
# kinds declare a line in it (`Reading.dispatched`), in the kinds table's order.
DISPATCHED = tuple(r for r in READINGS if r.dispatched)
DISPATCHABLE = tuple(f"feeders/{r.name}" for r in DISPATCHED)
DASHES = ("solid", "dashed", "dotted", "dotdash")


def _nonzero(u: _Run, name: str) -> bool:
    return u.has(name) and bool(np.any(u.read(name) != 0))


def _socs(u: _Run) -> tuple[list[str], np.ndarray] | None:
    names, columns = [], []
    for feeder in u.r.labels("feeders/name") if u.has("feeders/name") else []:
        path = f"devices/{feeder}/battery_soc"
        if u.has(path):
            soc = u.read(path)
            batteries = u.r.labels(f"devices/{feeder}/battery") if u.has(f"devices/{feeder}/battery") else []
            names += [f"{feeder}/{b}" for b in batteries] or [f"{feeder}/#{i}" for i in range(soc.shape[1])]
            columns.append(soc)
    return (names, np.concatenate(columns, axis=1)) if columns else None


def plot_ders(runs: list[_Run], relative: bool):
    runs = [u for u in runs if _has_der(u)]
    if not runs:
        return None
    single = len(runs) == 1
    a_b, a_s, a_pv, a_ev = _linked(relative, ("Battery power into the grid, system (MW, + discharging)", "MW"),
                                   ("Battery state of charge (one copy of each feeder)", "SOC (pu)"),
                                   ("PV power, system (MW): available (dashed) and delivered", "MW"),
                                   ("EV charging power, system (MW)", "MW"))
    panels.hline(a_b, 0.0, "grey", "solid")
    for u in runs:
        if u.has("feeders/battery_kw"):
            u.line(a_b, "feeders/battery_kw[system_mw]", _system_mw(u, "feeders/battery_kw"), u.label)
        socs = _socs(u)
        if socs:
            names, soc = socs
            if single and soc.shape[1] <= MAX_DEVICE_LINES:
                for j, name in enumerate(names):
                    u.line(a_s, f"battery_soc[{name}]", soc[:, j], name, panels.COLORS[j % len(panels.COLORS)], width=0.9)
            else:
                u.band(a_s, "battery_soc[range]", soc.min(axis=1), soc.max(axis=1), f"{u.label}: min-max over {soc.shape[1]} batteries")
                u.line(a_s, "battery_soc[mean]", soc.mean(axis=1), f"{u.label}: mean")
        if u.has("feeders/pv_available_kw", "feeders/pv_kw"):
            u.line(a_pv, "feeders/pv_available_kw[system_mw]", _system_mw(u, "feeders/pv_available_kw"),
                   f"{u.label}: available", dash="dashed", width=1.0)
            u.line(a_pv, "feeders/pv_kw[system_mw]", _system_mw(u, "feeders/pv_kw"), f"{u.label}: delivered")
        if u.has("feeders/ev_kw"):
            u.line(a_ev, "feeders/ev_kw[system_mw]", _system_mw(u, "feeders/ev_kw"), u.label)
    dispatchable = [u for u in runs if any(_nonzero(u, n) for n in DISPATCHABLE)]
    if not dispatchable:
        return panels.stack([a_b, a_s, a_pv, a_ev])
    legend = ", ".join(f"{r.dispatched} ({DASHES[i % len(DASHES)]})" for i, r in enumerate(DISPATCHED))
    a_dg = panels.panel(f"Dispatched DERs, system (MW): {legend}", "MW", relative,
                        x_range=a_b.x_range)  # zooms and pans with the other DER panels
    panels.hline(a_dg, 0.0, "grey", "solid")
    for u in dispatchable:
        for i, (r, name) in enumerate(zip(DISPATCHED, DISPATCHABLE)):
            if u.has(name):
                u.line(a_dg, f"{name}[system_mw]", _system_mw(u, name), f"{u.label}: {r.dispatched}",
                       dash=DASHES[i % len(DASHES)] if i else None)  # the first in the run's own dash
    return panels.stack([a_b, a_s, a_pv, a_ev, a_dg])


def plot_curtailment(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("feeders/pv_available_kw", "feeders/pv_kw") and np.any(u.read("feeders/pv_available_kw") != 0)]
    if not runs:
        return None
    a_p, a_e = _linked(relative, ("PV curtailment, system (MW): available minus delivered", "MW"),
                       ("PV curtailment energy, cumulative (MWh)", "MWh"))
    for u in runs:
        curtailed = np.clip(np.nan_to_num(u.read("feeders/pv_available_kw") - u.read("feeders/pv_kw")), 0, None)
        mw = (curtailed * feeder_multipliers(u.r)).sum(axis=1) / 1000.0
        u.line(a_p, "curtailment[system_mw]", mw, u.label)
        u.line(a_e, "curtailment[cumulative_mwh]", np.cumsum(mw) * u.r.step_hours, u.label)
    return panels.stack([a_p, a_e])


def plot_coupling(runs: list[_Run], relative: bool):
    runs = [u for u in runs if u.has("coupling/iterations")]
    if not runs:
        return None
    a_i, a_m, a_t = _linked(relative, ("Coupling: transmission solves per step", "iterations"),
                            ("Coupling: boundary voltage mismatch (pu; dashed: iterative tolerance)", "pu"),
                            ("Wall time per step (s)", "s"), log=(False, True, False))
    timing = (("timing/transmission_power_flow_s", "transmission power flow", "solid"),
              ("timing/transmission_wait_s", "transmission waiting on feeders", "dotted"),
              ("timing/feeders_opendss_s", "feeder processes (slowest)", "dashed"))
    for u in runs:
        u.line(a_i, "coupling/iterations", u.read("coupling/iterations"), u.label)
        if u.has("coupling/mismatch_pu"):
            u.line(a_m, "coupling/mismatch_pu[floored]", np.maximum(u.read("coupling/mismatch_pu"), 1e-12), u.label)
        for name, what, dash in timing:
            if u.has(name):
                t = u.read(name)
                u.line(a_t, f"{name}[max]", t.max(axis=1) if t.ndim == 2 else t, f"{u.label}: {what}", dash=dash, width=0.8)
        coupling = u.r.scenario.get("coupling", {})
        if coupling.get("tolerance_pu") and coupling.get("mode") == "iterative":
            panels.hline(a_m, coupling["tolerance_pu"], u.color)
    return panels.stack([a_i, a_m, a_t])


def _coordinator_series(u: _Run) -> list[str]:
    return [n for n in u.r.names() if n.startswith("coordinator/")]


def plot_coordinator(runs: list[_Run], relative: bool):
    """Coordinator solve times, iterations and cost terms, when the coordinator recorded them."""
    runs = [u for u in runs if _coordinator_series(u)]
    if not runs:
        return None
    kinds = {"solve times (s)": lambda n, u: u.r.units(n) == "s",
             "iterations": lambda n, u: "iteration" in n.lower(),
             "cost terms": lambda n, u: "cost" in n.lower() or "penalt" in n.lower()}
    shown = [(title, test) for title, test in kinds.items() if any(test(n, u) for u in runs for n in _coordinator_series(u))]
    if not shown:
        return None
    figs = _linked(relative, *[(f"Coordinator {title}", "") for title, _ in shown])
    for fig, (_, test) in zip(figs, shown):
        k = 0
        for u in runs:
            for name in _coordinator_series(u):
                if not test(name, u):
                    continue
                values = u.read(name).astype(float)
                values = values.reshape(values.shape[0], -1)
                # Columns along a named dimension (cost terms, slacks) are labelled by its names.
                dims = u.r.dims(name)[1:]
                names = u.r.labels(f"coordinator/{dims[0]}") if dims and u.has(f"coordinator/{dims[0]}") else []
                for j in range(values.shape[1]):
                    suffix = f"[{names[j] if j < len(names) else j}]" if values.shape[1] > 1 else ""
                    if values.shape[1] > 1 and not np.any(np.nan_to_num(values[:, j])):
                        continue  # a term that was zero in every solve
                    # Solves happen every few steps (NaN between): dots show each one.
                    u.line(fig, f"{name}{suffix}", values[:, j], f"{u.label}: {name[len('coordinator/'):]}{suffix}",
                           panels.COLORS[k % len(panels.COLORS)], width=0.9, markers=True)
                    k += 1
    return panels.stack(figs)


PLOTS = (
    ("boundary", "Boundary buses: voltages and P/Q", plot_boundary),
    ("transmission", "Transmission voltage range and losses", plot_transmission),
    ("feeder_envelopes", "Feeder voltage envelopes: lowest to highest node voltage (pu), band 0.95-1.05 dashed", plot_feeder_envelopes),
    ("node_heat_map", "Node voltage heat map (time x node)", plot_node_heat_map),
    ("heat_map", "Feeder voltage heat map (time x feeder)", plot_heat_map),
    ("violations", "Voltage violations", plot_violations),
    ("branch_loading", "Branch loading", plot_branch_loading),
    ("loading_histogram", "Branch loading histogram", plot_loading_histogram),
    ("ders", "DER dispatch and state of charge", plot_ders),
    ("curtailment", "PV curtailment", plot_curtailment),
    ("coupling", "Coupling iterations, mismatch and step wall times", plot_coupling),
    ("coordinator", "Coordinator", plot_coordinator),
)

CAPTIONS = {
    "heat_map": (
        "Time x feeder: left each feeder's lowest node voltage (bin minimum), right its highest (bin maximum). "
        "The node map above shows every node when the run recorded node voltages (output.node_voltages)."
    ),
    "node_heat_map": "Every node of every feeder (rows, grouped by feeder), time binned to the plot width; each cell is the lowest voltage in its bin.",
    "ders": "System values are each feeder's one-copy value times its multiplier; SOC is per battery of one feeder copy.",
}


# -- HTML -----------------------------------------------------------------------------------


def _png(fig) -> str:
    """The figure as base64 PNG, drawn by the Agg backend (pyplot and its global state are not used)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _fmt(value) -> str:
    if isinstance(value, str):
        return html.escape(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<span class="na">n/a</span>'
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.5g}"


def _text(value) -> str:
    """A table cell for stdout."""
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1300px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; font-family: monospace; }
thead th { background: #f0f3f7; text-align: center; }
tr:nth-child(even) td { background: #fafafa; }
.banner { background: #fde2e1; border: 2px solid #c62828; color: #8b0000; padding: 10px 14px; margin: 10px 0;
          font-weight: bold; border-radius: 4px; }
.ok { color: #1b5e20; } .na { color: #999; }
figure { margin: 18px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #444; margin-top: 4px; }
.notes li, .gaps li { font-size: 12px; margin: 2px 0; }
"""


def _build(paths: list[Path], output: Path) -> tuple[Path, pd.DataFrame]:
    paths = [Path(p) for p in paths]
    readers: list[RunFile] = []
    try:
        for path in paths:
            readers.append(RunFile(path))
        values = [run_kpis(r) for r in readers]
        labels = unique_labels(readers)
        table = kpi_frame(labels, values)

        starts = {str(r.scenario["time"]["start"]) for r in readers if r.n_steps}
        relative = len(starts) > 1
        runs = [_Run(r, label, panels.COLORS[i % len(panels.COLORS)],
                     panels.DASHES[i % len(panels.DASHES)] if len(readers) > 1 else "solid", relative)
                for i, (r, label) in enumerate(zip(readers, labels)) if r.n_steps]

        figures: list[tuple[str, str, str]] = []  # (key, title, HTML of the figure)
        if runs:
            interactive = {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for key, title, plot in PLOTS:
                    fig = plot(runs, relative)
                    if isinstance(fig, Model):
                        interactive[key] = fig
                        figures.append((key, title, ""))
                    elif fig is not None:
                        figures.append((key, title, f'<img alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}">'))
            if interactive:
                script, divs = panels.embed(interactive)
                figures = [(key, title, divs[key] if key in divs else body) for key, title, body in figures]
                figures.append(("", "", script))  # after the divs it draws into

        page = _html(readers, labels, values, table, figures)
    finally:
        for r in readers:
            r.close()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return output, table


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def absent(run: RunFile, values: dict) -> list[tuple[str, str]]:
    """What this run's file does not hold and the report therefore lacks, found by looking in
    the file: (KPI or plot, why) for each KPI that came out n/a and for the node heat map."""
    out = [(key, str(values.get(f"{key}.note", ""))) for key, value in values.items() if _is_nan(value)]
    feeders = run.labels("feeders/name") if run.has("feeders/name") else []
    missing = [f for f in feeders if not run.has(f"feeders/node_vm_pu/{f}")]
    if missing:
        off = run.scenario.get("output", {}).get("node_voltages") is False
        out.append(("node_heat_map", f"no node voltages (`feeders/node_vm_pu/<feeder>`) of {', '.join(missing)}"
                                     + (" (the run had output.node_voltages: false)" if off else "")))
    return out


def _html(readers, labels, values, table: pd.DataFrame, figures) -> str:
    title = "Tandem report: " + ", ".join(labels)
    interactive = any(not key for key, _, _ in figures)
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style>", panels.script() if interactive else "", "</head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    parts.append("<h2>Runs</h2><table><thead><tr><th>run</th><th>file</th><th>scenario</th><th>state</th>"
                 "<th>steps</th><th>start</th><th>step</th></tr></thead><tbody>")
    for r, label in zip(readers, labels):
        planned = int(r.attr("n_steps_planned", r.n_steps))
        state = '<span class="ok">complete</span>' if r.complete else "<b>incomplete</b>"
        parts.append(
            f"<tr><td>{html.escape(label)}</td><td>{html.escape(str(r.path))}</td>"
            f"<td>{html.escape(str(r.scenario.get('description', '')))}</td><td>{state}</td>"
            f"<td>{r.n_steps} of {planned}</td><td>{html.escape(str(r.scenario['time']['start']))}</td>"
            f"<td>{html.escape(str(r.step))}</td></tr>"
        )
    parts.append("</tbody></table>")
    for r, label in zip(readers, labels):
        if not r.complete:
            error = r.error or "the run did not finish (no error recorded: still running or killed)"
            extra = "" if r.n_steps else " No step was recorded: nothing to plot."
            parts.append(f'<div class="banner">{html.escape(label)}: incomplete: {html.escape(error)}.'
                         f"{html.escape(extra)} KPIs cover the {r.n_steps} recorded steps.</div>")

    parts.append("<h2>Key performance indicators</h2>")
    parts.append("<p>Unit at the end of each name. <code>_per_copy</code>: one copy of every feeder, summed over "
                 "feeders; other feeder energies are system totals (each feeder x its <code>feeders/multiplier</code>). "
                 "Derived KPIs are explained under <a href=\"#notes\">Notes</a>, n/a values under "
                 "<a href=\"#absent\">Not in the results file</a>.</p>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    parts.append(f"<table class=\"kpis\"><thead><tr><th>KPI</th>{head}</tr></thead><tbody>")
    for name, row in table.iterrows():
        if name == "file":
            continue
        cells = "".join(f"<td>{_fmt(v)}</td>" for v in row.values)
        parts.append(f"<tr><td>{html.escape(str(name))}</td>{cells}</tr>")
    parts.append("</tbody></table>")
    if figures:
        parts.append("<h2>Plots</h2>")
        if len(readers) > 1:
            parts.append("<p>One line (or band) per run, colours as in the legends. "
                         + ("Runs start at different times: the time axis is hours since each run's start." if any(
                             r.n_steps for r in readers) and len({str(r.scenario['time']['start']) for r in readers if r.n_steps}) > 1 else "")
                         + "</p>")
        parts.append("<p>Time series hold every recorded step: drag across a panel to zoom in time; pick pan or "
                     "wheel zoom in the toolbar to move along it, reset to see the whole run again; click a legend "
                     "entry to hide its line. The panels of one figure move together. "
                     f"Heat maps are binned to at most {MAX_BINS} time bins (each cell keeps its bin's extreme).</p>")
        for key, title, body in figures:
            if not key:
                parts.append(body)
                continue
            caption = CAPTIONS.get(key, "")
            parts.append(f'<figure id="{key}"><h3>{html.escape(title)}</h3>{body}'
                         + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>")
    notes: dict[str, list[str]] = {}
    for v in values:
        for key, note in v.items():
            if key.endswith(".note") and not _is_nan(v.get(key[:-5])):
                notes.setdefault(key[:-5], [])
                if note not in notes[key[:-5]]:
                    notes[key[:-5]].append(note)
    if notes:
        parts.append("<h2 id=\"notes\">Notes</h2><ul class=\"notes\">")
        for key, texts in notes.items():
            parts.append(f"<li><code>{html.escape(key)}</code>: {html.escape(' | '.join(texts))}</li>")
        parts.append("</ul>")
    gaps = [(label, key, text) for r, label, v in zip(readers, labels, values) for key, text in absent(r, v)]
    if gaps:
        parts.append("<h2 id=\"absent\">Not in the results file</h2><ul class=\"gaps\">")
        for label, key, text in gaps:
            parts.append(f"<li>{html.escape(label)}: <code>{html.escape(key)}</code>: {html.escape(text)}</li>")
        parts.append("</ul>")

    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(paths: list[Path], output: Path) -> Path:
    """Write one self-contained HTML report of the runs in `paths` to `output`; returns it."""
    return _build(list(paths), Path(output))[0]


def main_report(args) -> int:
    """`tandem report RESULTS... [-o OUTPUT]`: print the KPI table, write the HTML page."""
    paths = [Path(p) for p in args.results]
    if not paths:
        print("tandem report: give at least one results file", file=sys.stderr)
        return 2
    for path in paths:
        if not path.is_file():
            print(f"results file not found: {path}", file=sys.stderr)
            return 2
    output = Path(args.output) if getattr(args, "output", None) else paths[0].with_suffix(".html")
    try:
        output, table = _build(paths, output)
    except OSError as exc:
        print(f"cannot read results: {exc}", file=sys.stderr)
        return 2
    shown = table.drop(index=["file"], errors="ignore").map(_text)
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 48):
        print(shown.to_string())
    print(f"report: {output}")
    return 0
