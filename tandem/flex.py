"""`tandem flex`: the feasible P-Q region at a feeder's interface at one time of a scenario.

The scenario's feeder is built as a study builds it (loads with their profiles, DERs),
solved in OpenDSS at the chosen step so its regulators settle, and turned into the
optimisation data (`coordination.network_data`). The region of the first period of a
look-ahead horizon starting there is computed by optimising in many directions
(`coordination.flexibility.region_at`), together with its variants: regulator taps moved
up and down, no PV output, no storage (batteries and EV chargers unavailable). A PNG shows
them overlaid; the vertices are printed. Where the feeder's own optimum already misses a limit
(no operating point keeps them all), the printout says so and what it misses, and the plot marks
that minimum-violation point with a cross instead of presenting a region.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd

from scenario.schema import ScenarioError, load_scenario

TAP_STEP_PU = 0.00625  # one step of a 32-step +-10 % regulator


def add_parser(commands) -> None:
    flex = commands.add_parser(
        "flex", help="feasible P-Q region at a feeder's interface",
        description=(
            "Compute and plot the feasible P-Q region at a feeder's interface (one copy of the feeder) at a "
            "time of the scenario, by optimising in many directions over the feeder's LinDist3Flow model with "
            "its DERs, and how it changes with regulator taps and DER availability. Writes a PNG and prints "
            "each region's vertices."
        ),
    )
    flex.add_argument("scenario", help="scenario file (.yaml, .toml or .json)")
    flex.add_argument("--feeder", required=True, metavar="NAME", help="feeder name (feeders[].name or <model>_bus<bus>)")
    flex.add_argument("--time", required=True, metavar="T",
                      help="a time within the run (ISO 8601, e.g. 2024-07-01T12:00) or an offset from its start with units (e.g. 12h)")
    flex.add_argument("--horizon", type=int, default=1, metavar="N",
                      help="periods of look-ahead (at the scenario's step) the region's first period belongs to; default 1")
    flex.add_argument("--directions", type=int, default=32, metavar="K", help="optimisation directions (default 32)")
    flex.add_argument("--tap-steps", type=int, default=4, metavar="S",
                      help="regulator tap change of the tap variants, in steps of 0.625 %% (default 4; 0 for none)")
    flex.add_argument("--voltage", type=float, default=1.0, metavar="PU", help="head voltage (default 1.0 pu)")
    flex.add_argument("-o", "--output", help="PNG to write (default runs/output/flex_<feeder>_<time>.png)")


def step_of(text: str, scenario) -> int:
    """The step of the run holding time `text` (a timestamp or an offset with units)."""
    start, step, n = pd.Timestamp(scenario.time.start), scenario.time.step, scenario.time.n_steps
    if re.fullmatch(r"\s*[0-9.]+\s*", text):
        raise ScenarioError(f"--time {text!r} needs units (e.g. {text.strip()}h) or a date and time")
    if re.fullmatch(r"\s*[0-9.]+\s*[a-zA-Z]+\s*", text) and not re.fullmatch(r"\s*\d{4}.*", text):
        try:
            offset = pd.Timedelta(text)
        except ValueError:
            raise ScenarioError(f"--time {text!r} is neither a time nor an offset with units (e.g. 12h)") from None
        when = start + offset
    else:
        try:
            when = pd.Timestamp(text)
        except ValueError:
            raise ScenarioError(f"--time {text!r} is neither a time nor an offset with units (e.g. 12h)") from None
        if when.tzinfo is None and start.tzinfo is not None:
            when = when.tz_localize(start.tzinfo)
        elif when.tzinfo is not None and start.tzinfo is None:
            when = when.tz_convert(None)
    k = int(np.floor((when - start) / step))
    if not 0 <= k < n:
        raise ScenarioError(f"--time {text!r} is outside the run ({start} to {start + step * n}, exclusive)")
    return k


def feeder_setup(scenario, name: str, k: int, horizon: int, v_source: float):
    """The feeder of the scenario at step k as optimisation data: (FeederSetup, update data, Options)."""
    from coordination.centralized import FeederSetup, Options
    from coordination.ders import ders_from_fleet
    from coordination.ders.ev import ev_horizon
    from coordination.network_data import feeder_data
    from grid.feeder import VOLTAGE_BAND, build_feeder

    specs = {f.label: f for f in scenario.feeders}
    if name not in specs:
        raise ScenarioError(f"unknown feeder {name!r}; the scenario's feeders: {', '.join(specs)}")
    if horizon < 1 or k + horizon > scenario.time.n_steps:
        raise ScenarioError(f"--horizon {horizon} runs past the end of the run ({scenario.time.n_steps - k} steps left)")
    model = build_feeder(specs[name], scenario)
    model.run(complex(v_source, 0.0), k, f" at step {k}")  # regulators settle on the step's loads
    data = feeder_data(model)
    fleet = model.fleet
    hours = scenario.time.step_seconds / 3600.0
    ders = ders_from_fleet(fleet)
    window = slice(k, k + horizon)
    update = {
        "load_levels": model.load_levels[:, window],
        "pv_available_kw": {u.name: u.pmpp_kw * fleet.irradiance_kw_m2[window] for u in fleet.pv},
        "battery_soc": {u.name: u.soc for u in fleet.batteries},
        "head_voltage": v_source,
    }
    plugged, energy = {}, {}
    for unit in fleet.evs:
        plugged[unit.name], energy[unit.name] = ev_horizon(unit, k, horizon, hours)
    update["ev_plugged"], update["ev_energy_kwh"] = plugged, energy
    setup = FeederSetup(data, bus=0, multiplier=1.0, ders=ders, v_min=VOLTAGE_BAND[0], v_max=VOLTAGE_BAND[1],
                        v_source=v_source)
    return setup, update, Options(horizon=horizon, dt_hours=hours)


def moved_taps(data, steps: int):
    """A copy of the feeder data with every regulator's ratio moved by `steps` tap steps."""
    out = copy.deepcopy(data)
    for br in out.branches:
        if br.kind == "regulator":
            br.ratio = np.clip(br.ratio + steps * TAP_STEP_PU, 0.9, 1.1)
    return out


def regions(setup, update: dict, options, directions: int, tap_steps: int) -> dict:
    """The region as it is and its variants, label -> Region."""
    import dataclasses

    from coordination.ders import FeederDers
    from coordination.dso import FeederProblem
    from coordination.flexibility import region_at

    problem = FeederProblem(setup, options, directions=True)
    problem.update(**update)
    out = {"as is": region_at(problem, 0, directions)}
    regulated = any(br.kind == "regulator" for br in setup.data.branches)
    if regulated and tap_steps:
        for sign in (1, -1):
            problem.update(ratios=moved_taps(setup.data, sign * tap_steps))
            out[f"taps {sign * tap_steps:+d} steps"] = region_at(problem, 0, directions)
        problem.update(ratios=setup.data)
    ders = setup.ders
    if ders["pv"]:
        problem.update(pv_available_kw={u.name: 0.0 for u in ders["pv"]})
        out["no PV output"] = region_at(problem, 0, directions)
        problem.update(pv_available_kw=update["pv_available_kw"])
    if ders["batteries"] or ders["evs"]:
        bare = dataclasses.replace(setup, ders=FeederDers(pv=ders["pv"], flexible=ders["flexible"]))
        other = FeederProblem(bare, options, directions=True)
        other.update(**{key: value for key, value in update.items() if key not in ("battery_soc", "ev_plugged", "ev_energy_kwh")})
        out["no storage or EV"] = region_at(other, 0, directions)
    return out


def report(regions: dict) -> str:
    """The regions as text: P and Q ranges, area, and the vertices."""
    lines = []
    for label, region in regions.items():
        v = region.vertices()
        lines.append(f"{label}: P {v[:, 0].min():.1f} .. {v[:, 0].max():.1f} kW, Q {v[:, 1].min():.1f} .. "
                     f"{v[:, 1].max():.1f} kvar, area {region.area() / 1e6:.4f} MW Mvar, own optimum "
                     f"({region.reference[0]:.1f}, {region.reference[1]:.1f})")
        lines.append("  vertices (P kW, Q kvar): " + " ".join(f"({p:.1f}, {q:.1f})" for p, q in v))
        if not region.within_limits:
            lines.append("  " + region.limits_note())
    return "\n".join(lines)


def main_flex(args: argparse.Namespace) -> int:
    from coordination.flexibility import plot_regions
    from grid.errors import FeederModelError, PowerFlowError

    if args.directions < 4:
        raise ScenarioError(f"--directions must be at least 4 (got {args.directions})")
    if not 0.5 <= args.voltage <= 1.5:
        raise ScenarioError(f"--voltage must be a head voltage in pu between 0.5 and 1.5 (got {args.voltage})")
    scenario = load_scenario(args.scenario)
    k = step_of(args.time, scenario)
    try:
        setup, update, options = feeder_setup(scenario, args.feeder, k, args.horizon, args.voltage)
    except (FeederModelError, PowerFlowError) as exc:
        raise ScenarioError(str(exc)) from None
    found = regions(setup, update, options, args.directions, args.tap_steps)
    when = pd.Timestamp(scenario.time.start) + scenario.time.step * k
    path = Path(args.output or f"runs/output/flex_{args.feeder}_{when.strftime('%Y%m%dT%H%M')}.png")
    plot_regions(found, path, f"{args.feeder} at {when} (one copy, head {args.voltage:g} pu)")
    print(f"P-Q region at the interface of {args.feeder} at {when} (step {k}), one copy of the feeder")
    print(report(found))
    print(f"plot: {path}")
    return 0
