"""Receding-horizon coordination of a scenario: a look-ahead problem (`centralized` or a
TSO-DSO scheme) fed with the scenario's forecasts and the measured state, one plan per
coordination interval.

No HELICS here. The coordinator federate passes measurements in and sends each plan's
set-points out; tests and other drivers can run the same code. The OPF's periods are
the coordination intervals: a plan made before step s covers steps s .. s + H*K - 1
(K steps per interval, H intervals), and only its first period is applied before the
next plan replaces it. A multi-resolution horizon (`coordination.resolution`) keeps the
first periods one interval long and lengthens later ones; each period's forecast is the
mean over the steps it covers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from coordination.centralized import CentralizedProblem, FeederSetup, Options, Result, fleet_setpoints
from coordination.ders import KINDS, ders_from_fleet
from coordination.ders.kind import PlanView, period_means
from coordination.network_data import feeder_data, transmission_data, update_ratios
from coordination.objective import Prices
from grid.setpoints import Setpoints
from timeseries import forecasts


def scheme_class(name: str) -> type:
    """The problem class of a `coordination.scheme` the coordinator federate runs."""
    from coordination.schemes import SCHEMES

    return CentralizedProblem if name == "centralized" else SCHEMES[name]


STATUS_CODES = {"optimal": 0, "time limit (feasible)": 1}  # anything else: 2 (failed, set-points kept)
SLACKS = ("unserved_mwh", "spilled_mwh", "transmission_overload_mwh", "feeder_overload_kvah",
          "voltage_violation_pu2h", "soc_shortfall_kwh", "ev_unmet_kwh")


@dataclass
class Measurements:
    """The federation's state after the step before a plan."""

    battery_soc: dict[str, np.ndarray]  # feeder -> SOC of each battery (fleet order) at the step's end
    head_voltage_pu: dict[str, float]  # feeder -> boundary voltage magnitude
    regulator_taps: dict[str, np.ndarray] = field(default_factory=dict)  # feeder -> tap per regulator
    multipliers: np.ndarray | None = None  # copies behind each feeder, scenario order
    node_vm: dict[str, np.ndarray] = field(default_factory=dict)  # feeder -> voltage of every node (node_names order)


@dataclass
class Plan:
    step: int  # first step the set-points apply to
    result: Result
    failed: bool  # no usable solution: the feeders keep the last set-points
    setpoints: dict[str, Setpoints]  # feeder -> its set-points (empty when failed)
    dispatch_mw: np.ndarray | None  # MW per row of the network's gen table (NaN: not dispatched)
    predicted_vm: dict[str, np.ndarray]  # feeder -> first-period voltage per node (NaN: not modelled)


class RecedingHorizon:
    """The coordinator's model of the study and its plan-by-plan use."""

    def __init__(self, scenario, problem_class: type | None = None, build_problem: bool = True):
        """`build_problem` False: only the study's data (networks, fleets, forecasts), for users
        of the coordinator's view without its OPF (`coordination.market.from_study`)."""
        from grid.feeder import build_feeder
        from grid.networks import load_network
        from grid.ratings import apply_ratings
        from timeseries.profiles import load_shape

        spec = scenario.coordination
        self.scenario = scenario
        self.K = int(spec.interval / scenario.time.step)
        self.H = spec.periods
        # Steps each period covers (K each, unless the horizon is multi-resolution).
        self.period_steps = np.array(spec.period_intervals, dtype=int) * self.K
        self.uniform = bool(np.all(self.period_steps == self.K))
        self.step_hours = scenario.time.step_seconds / 3600.0
        self.n_steps = scenario.time.n_steps
        self.labels = [f.label for f in scenario.feeders]

        # The feeders as the feeder federates build them: same models, profiles and DERs.
        self.models = {f.label: build_feeder(f, scenario) for f in scenario.feeders}
        self.data = {}
        for name, model in self.models.items():
            model.solve(f" (coordinator's copy of feeder {name})")
            self.data[name] = feeder_data(model)
        self.node_index = {name: _node_positions(model.node_names) for name, model in self.models.items()}

        net = load_network(scenario.transmission.network)
        apply_ratings(net, scenario.transmission.ratings, scenario.transmission.network)
        replaced = {int(f.bus) for f in scenario.feeders if f.bus_load == "replace"}
        net.load.loc[net.load.bus.isin(replaced), "in_service"] = False  # as the transmission federate does
        self.gen_rows = list(net.gen.index)
        self.transmission = transmission_data(net).derated(spec.rating_margin)
        self.bus_base_mw = self.transmission.bus_load_mw()
        self.system_level = load_shape(scenario.transmission.load_profile, scenario.time.index())

        self.multipliers = np.array([1.0 if f.multiplier == "match_bus_load" else float(f.multiplier)
                                     for f in scenario.feeders])
        lo, hi = spec.voltage_limits[0] + spec.voltage_margin, spec.voltage_limits[1] - spec.voltage_margin
        self.setups = setups = {
            name: FeederSetup(self.data[name], int(f.bus), float(k), ders_from_fleet(self.models[name].fleet, f), lo, hi)
            for name, f, k in zip(self.labels, scenario.feeders, self.multipliers)
        }
        options = Options(
            horizon=self.H, dt_hours=spec.interval.total_seconds() / 3600.0,
            period_hours=None if self.uniform else tuple(n * spec.interval.total_seconds() / 3600.0
                                                         for n in spec.period_intervals),
            battery_binaries=spec.battery_binaries, time_limit_s=spec.time_limit_s, regulators=spec.regulators,
            feeder_model=spec.feeder_model,
            # Constant-power loads: with voltage-dependent ones the OPF buys "savings" by absorbing
            # Q to lower feeder voltages (conservation voltage reduction), which the feeders'
            # regulators then undo by tapping up (measured on the default study: more violations).
            voltage_dependent_loads=False,
            prices=Prices(curtailment=spec.curtailment_price, battery_degradation=spec.battery_degradation_price),
        )
        if spec.dso_processes is not None:
            from coordination.schemes import SchemeOptions

            options = SchemeOptions(**vars(options), dso_processes=spec.dso_processes)
        self.problem = (problem_class or scheme_class(spec.scheme))(self.transmission, setups, options) if build_problem else None
        self.term_names = list(self.problem.term_names) if build_problem else []
        self.held = {name: {(br.to_bus, p) for br in self.data[name].branches if br.kind == "regulator" for p in br.phases}
                     if spec.regulators == "hold" else set() for name in self.labels}
        self._taps = {name: None for name in self.labels}
        # What each DER kind keeps of each feeder from plan to plan (`DerKind.plan_inputs`).
        self._kind_state: dict[str, dict[str, dict]] = {name: {kind.name: {} for kind in KINDS} for name in self.labels}
        self.last_plan: Plan | None = None
        self._last_step: int | None = None  # of the last plan made (failed or not)
        self.history: list[dict] = []  # every plan's step, measurements and outcome (see `state`)
        self._held_positions = {name: [at for node, at in self.node_index[name].items() if node in self.held[name]]
                                for name in self.labels}

    # -- checkpoints ------------------------------------------------------------------------
    # The OPF is re-solved warm from the last plan's basis, and where an optimum is not unique
    # the vertex found depends on that history. A checkpoint therefore holds what every plan
    # so far was made from (its measurements, compactly), and a restored coordinator makes the
    # same plans again on a fresh model: the same sequence of solves ends in the same state.
    def state(self) -> dict:
        """The plans made so far, JSON-ready."""
        return {"plans": self.history}

    def restore(self, state: dict, progress=None) -> list[str]:
        """Make the saved plans again on this freshly built coordinator (`progress(i, n)` after
        each). Returns a line for each plan whose status or objective came out differently
        (e.g. one that had hit the solver's time limit)."""
        plans = state["plans"]
        differences = []
        for i, saved in enumerate(plans, 1):
            plan = self.plan(saved["step"], self._expand(saved["measured"]))
            objective = plan.result.objective
            if plan.result.status != saved["status"] or objective != saved["objective"]:
                differences.append(f"plan at step {saved['step']}: {plan.result.status}, objective {objective} "
                                   f"(first run: {saved['status']}, {saved['objective']})")
            if progress is not None:
                progress(i, len(plans))
        return differences

    def _compact(self, measured: Measurements) -> dict:
        """What `plan` reads of the measurements, as lists (node voltages: the held nodes only)."""
        held = {}
        if self.scenario.coordination.regulators == "hold":
            held = {name: [float(vm[at]) for at in self._held_positions[name]] for name, vm in measured.node_vm.items()}
        return {
            "battery_soc": {name: np.asarray(v, dtype=float).tolist() for name, v in measured.battery_soc.items()},
            "head_voltage_pu": {name: float(v) for name, v in measured.head_voltage_pu.items()},
            "regulator_taps": {name: np.asarray(v, dtype=float).tolist() for name, v in measured.regulator_taps.items()},
            "multipliers": None if measured.multipliers is None else np.asarray(measured.multipliers, dtype=float).tolist(),
            "held_vm": held,
        }

    def _expand(self, compact: dict) -> Measurements:
        node_vm = {}
        for name, values in compact["held_vm"].items():
            node_vm[name] = np.full(len(self.models[name].node_names), np.nan)
            node_vm[name][self._held_positions[name]] = values
        multipliers = compact["multipliers"]
        return Measurements(
            battery_soc={name: np.asarray(v, dtype=float) for name, v in compact["battery_soc"].items()},
            head_voltage_pu=dict(compact["head_voltage_pu"]),
            regulator_taps={name: np.asarray(v, dtype=float) for name, v in compact["regulator_taps"].items()},
            multipliers=None if multipliers is None else np.asarray(multipliers, dtype=float),
            node_vm=node_vm,
        )

    def close(self) -> None:
        """Stop the scheme's worker processes, if it has any."""
        close = getattr(self.problem, "close", None)
        if close is not None:
            close()

    # -- forecasts --------------------------------------------------------------------------
    def forecast(self, actual: np.ndarray, step: int, series: int = 0) -> np.ndarray:
        """Per-period means [..., H] over the steps from `step` the horizon covers (K per period,
        or each period's own steps on a multi-resolution horizon) of a realised profile, as the
        scenario's forecaster sees them from step - 1."""
        spec = self.scenario.coordination
        n = int(self.period_steps.sum())
        t = step - 1
        if spec.forecast == "perfect":
            values = forecasts.perfect(actual, t, n)
        elif spec.forecast == "persistence":
            values = forecasts.persistence(actual, t, n, period_steps=int(round(24 / self.step_hours)))
        else:
            # The error is set one interval (K steps) ahead; every series gets its own, reproducibly.
            per_step = spec.forecast_error / self.K**spec.forecast_error_growth
            values = forecasts.noisy(actual, t, n, error_at_1_step=per_step, error_growth=spec.forecast_error_growth,
                                     seed=spec.forecast_seed * 100_003 + series)
        return period_means(values, self.period_steps)

    # -- one plan ---------------------------------------------------------------------------
    def plan(self, step: int, measured: Measurements) -> Plan:
        """Update the problem with forecasts from `step` on and the measured state, solve,
        and return the first period's set-points (step >= 1: something must be measured)."""
        if not 1 <= step < self.n_steps:
            raise ValueError(f"a plan starts at a step within 1..{self.n_steps - 1} (got {step})")
        compact = self._compact(measured)
        # What carries from plan to plan moves along by whole periods (uniform horizons only:
        # a coarse period is not one interval later a shifted copy of itself).
        if (self._last_step is not None and self.uniform and hasattr(self.problem, "advance")
                and (step - self._last_step) % self.K == 0):
            self.problem.advance((step - self._last_step) // self.K)
        self._last_step = step
        data = self._update_data(step, measured)
        self.problem.update(**data)
        result = self.problem.solve()
        self.history.append({"step": step, "measured": compact, "status": result.status, "objective": result.objective})
        failed = result.status not in STATUS_CODES
        plan = Plan(step, result, failed, {}, None, {})
        if not failed:
            plan.setpoints = {name: self._setpoint_message(result, name) for name in self.labels}
            plan.dispatch_mw = self._dispatch(result)
            plan.predicted_vm = {name: self._predicted(result, name) for name in self.labels}
            self.last_plan = plan
            self._planned(plan, measured)
        return plan

    def initial_measurements(self) -> Measurements:
        """The state as the scenario starts it, for a plan made without a co-simulation: the
        batteries at their initial SOC, head voltages 1 pu, node voltages of the models' own
        snapshot (which hold regulators where `regulators: hold` needs them)."""
        return Measurements(
            battery_soc={n: np.array([u.soc for u in m.fleet.batteries]) for n, m in self.models.items()},
            head_voltage_pu={n: 1.0 for n in self.labels},
            node_vm={n: m.node_voltages() for n, m in self.models.items()},
        )

    def inputs(self, step: int, measured: Measurements) -> dict:
        """What a plan at `step` is made from (the keywords of `coordination.update.Update`):
        the forecasts over the look-ahead and the measured state."""
        return self._update_data(step, measured)

    def _update_data(self, step: int, measured: Measurements) -> dict:
        level = self.forecast(self.system_level, step, series=0)
        data: dict = {
            "bus_load_mw": {bus: base * level for bus, base in self.bus_base_mw.items()},
            "load_levels": {},
            "head_voltage": {},
        }
        for i, name in enumerate(self.labels):
            data["load_levels"][name] = self.forecast(self.models[name].load_levels, step, series=1 + 3 * i)
            if name in measured.head_voltage_pu:
                data["head_voltage"][name] = float(measured.head_voltage_pu[name])
            for kind in KINDS:
                for keyword, values in kind.plan_inputs(self._view(kind, name, i, step, measured)).items():
                    data.setdefault(keyword, {})[name] = values
        if self.scenario.coordination.regulators == "hold":
            missing = [name for name in self.labels if self._held_positions[name] and name not in measured.node_vm]
            if missing:  # the OPF would hold those regulators at whatever voltage it last had
                raise ValueError(f"feeder {missing[0]}: coordination.regulators is 'hold' but the measurements give no node "
                                 "voltages (Measurements.node_vm) to hold its regulators at")
            data["held_voltage"] = {
                name: {node: float(vm[at]) for node, at in self.node_index[name].items() if node in self.held[name]}
                for name, vm in measured.node_vm.items()
            }
        else:
            ratios = self._new_ratios(measured.regulator_taps)
            if ratios:
                data["ratios"] = ratios
        if measured.multipliers is not None and not np.allclose(measured.multipliers, self.multipliers, rtol=1e-12):
            self.multipliers = np.asarray(measured.multipliers, dtype=float).copy()
            data["multipliers"] = dict(zip(self.labels, self.multipliers.tolist()))
        return data

    def _view(self, kind, name: str, index: int, step: int, measured: Measurements) -> PlanView:
        """What a kind sees of feeder `name` for a plan at `step`."""
        fleet = self.models[name].fleet
        return PlanView(name, index, step, self.step_hours, self.H, self.K, fleet, fleet.units(kind.fleet_key),
                        self.setups[name].ders.of(kind), measured, self._kind_state[name][kind.name],
                        lambda values, series: self.forecast(values, step, series=series), tuple(self.period_steps))

    def _planned(self, plan: Plan, measured: Measurements) -> None:
        """Each kind's part of a plan made, feeder by feeder (`DerKind.planned`)."""
        for i, name in enumerate(self.labels):
            values, message = plan.result.setpoints[name], plan.setpoints[name]
            for kind in KINDS:
                kind.planned(self._view(kind, name, i, plan.step, measured), values, getattr(message, kind.fleet_key))

    def _new_ratios(self, taps: dict[str, np.ndarray]) -> dict:
        """Feeders whose regulators moved since the last plan, with their new ratios."""
        changed = {}
        for name, values in taps.items():
            values = np.asarray(values, dtype=float)
            if not len(values) or (self._taps[name] is not None and np.array_equal(values, self._taps[name])):
                continue
            self._taps[name] = values
            dss = self.models[name].dss
            for reg, tap in zip(self.models[name].fleet.regulators, values):
                dss.RegControls.Name(reg)
                dss.RegControls.TapNumber(int(round(tap)))
            update_ratios(self.data[name], self.models[name])
            changed[name] = self.data[name]
        return changed

    # -- reading a result -------------------------------------------------------------------
    def _setpoint_message(self, result: Result, name: str) -> Setpoints:
        """The first period's set-points, as the feeders take them (each DER kind's part)."""
        return fleet_setpoints(result, self.setups[name].ders, name, period=0)

    def _dispatch(self, result: Result) -> np.ndarray:
        out = np.full(len(self.gen_rows), np.nan)
        for i, row in enumerate(self.gen_rows):
            values = result.dispatch_mw.get(f"gen:{row}")
            if values is not None:
                out[i] = float(values[0])
        return out

    def _predicted(self, result: Result, name: str) -> np.ndarray:
        out = np.full(len(self.models[name].node_names), np.nan)
        positions = self.node_index[name]
        for node, values in result.voltages[name].items():
            at = positions.get(node)
            if at is not None:
                out[at] = values[0]
        return out


def voltage_error(predicted: np.ndarray, realised_mean: np.ndarray) -> tuple[float, float]:
    """Largest and mean absolute difference (pu) over the nodes the OPF models."""
    diff = np.abs(predicted - realised_mean)
    diff = diff[np.isfinite(diff)]
    return (float(diff.max()), float(diff.mean())) if diff.size else (math.nan, math.nan)


def _node_positions(node_names: list[str]) -> dict[tuple[str, int], int]:
    """(bus, phase) of every OpenDSS node name ('bus.phase') -> its position."""
    out = {}
    for i, node in enumerate(node_names):
        bus, _, phase = node.lower().rpartition(".")
        if phase.isdigit():
            out[(bus, int(phase))] = i
    return out
