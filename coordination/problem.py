"""What the persistent look-ahead problems share (`CentralizedProblem`, the DSO's
`FeederProblem`, the TSO's `TransmissionProblem`): a pyomo model built once and solved warm
by a `PersistentHighs`; new data written into its Params (`apply_feeder`); solutions read
through columns and linear forms made once (`plan_after`, `forms`); the DERs' values read
per kind (`UnitReader`); and the objective's terms, each defined once (`der_cost_terms`)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo

from coordination.ders import FeederDers, unit_blocks
from coordination.ders.kind import DerKind
from coordination.ders.registry import KINDS
from coordination.distribution import set_held_voltage, set_load_forecast, set_node_loads, set_ratios
from coordination.interface import set_head_voltage
from coordination.network_data import FeederData
from coordination.objective import TERMS as ORDER
from coordination.options import Options
from coordination.solver import BatteryDirections, PersistentHighs, SolveStats
from coordination.update import DER_KEYWORDS, FeederUpdate

# Every term an objective may have: the objective's order, then the kinds' terms it does not
# name, in the kinds' order. Optional terms (`CostTerm.optional`: the gensets') appear only
# where some unit has them.
TERMS: tuple[str, ...] = ORDER + tuple(dict.fromkeys(
    t.name for kind in KINDS for t in kind.cost_terms if t.name not in ORDER))


class PersistentProblem:
    """A model and its persistent solver; subclasses build the model and read their results."""

    def __init__(self, model: pyo.ConcreteModel, options: Options, time_limit_s: float | None = None,
                 batteries: Iterable[pyo.Block] = ()):
        self.model = model
        self.options = options
        self.solver = PersistentHighs(model, options.time_limit_s if time_limit_s is None else time_limit_s,
                                      options.mip_rel_gap, cold_solver=options.cold_solver)
        self.n_variables = sum(1 for _ in model.component_data_objects(pyo.Var, active=True))
        self.n_constraints = sum(1 for _ in model.component_data_objects(pyo.Constraint, active=True))
        self.is_mip = any(not v.is_continuous() for v in model.component_data_objects(pyo.Var, active=True))
        self.directions = BatteryDirections(self.solver, list(batteries), options.battery_binaries)
        self.term_names = list(model.cost_terms)
        self._plan: dict | None = None  # what a solve reads back, made after the first solve
        self._forms: dict[str, object] = {}  # further columns and forms, made on first use

    def plan_after(self, stats: SolveStats, make: Callable[[], dict]) -> dict:
        """The read-back plan, made anew after a solve that built the HiGHS model."""
        if self._plan is None or stats.first:
            self._plan = make()
            if self.options.freeze_gc:
                # Keep the model's objects away from the cyclic garbage collector: its walks
                # over millions of pyomo objects add pauses to re-solves.
                gc.collect()
                gc.freeze()
        return self._plan

    def forms(self, key: str, make: Callable[[], object]) -> object:
        """Columns or linear forms under `key`, made once."""
        if key not in self._forms:
            self._forms[key] = make()
        return self._forms[key]

    def advance(self, periods: int) -> None:
        """The next solve's horizon starts `periods` periods after the last one's (a receding
        horizon): what carries over from solve to solve moves along (battery directions)."""
        self.directions.advance(periods)

    def apply_feeder(self, fb: pyo.Block, data: FeederData, update: FeederUpdate) -> None:
        """One feeder's new data into its block (and rewritten coefficients into HiGHS)."""
        H = len(fb.T)
        if update.load_levels is not None:
            set_load_forecast(fb, data, update.load_levels)
        if update.node_loads is not None:
            set_node_loads(fb, *update.node_loads)
        if update.ratios is not None:
            self.solver.update_coefficients(set_ratios(fb, update.ratios))
        if update.held_voltage is not None:
            set_held_voltage(fb, update.held_voltage)
        if update.head_voltage is not None:
            set_head_voltage(fb, update.head_voltage)
        apply_units(fb, update, H)


def apply_units(b: pyo.Block, update: FeederUpdate, horizon: int) -> None:
    """The units' data of a FeederUpdate into their blocks under b, by each kind's inputs."""
    for kind_name, units in update.ders.items():
        blocks = b.component(kind_name)
        for unit, values in units.items():
            d = blocks[unit]
            for key, value in values.items():
                DER_KEYWORDS[key][1].apply(d, d.unit, value, horizon)


# -- reading the units of a solution ----------------------------------------------------------


@dataclass
class UnitColumns:
    kind: DerKind
    unit: object
    block: pyo.Block
    cols: dict[str, np.ndarray]


def unit_columns(b: pyo.Block, positions: Callable) -> dict[str, UnitColumns]:
    """Every unit's solution columns by unit name, in registry order."""
    return {name: UnitColumns(kind, d.unit, d, kind.columns(d, positions)) for kind, name, d in unit_blocks(b)}


def read_units(columns: Mapping[str, UnitColumns], x: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Each unit's set-points and recorded values in the solution x (arrays over the horizon)."""
    return {name: c.kind.setpoints({key: x[cols] for key, cols in c.cols.items()}, c.block, c.unit)
            for name, c in columns.items()}


# -- the objective's DER terms, each defined once -------------------------------------------


def der_cost_terms(blocks: Iterable[tuple[pyo.Block, float | None]], options: Options,
                   tso: bool = False) -> dict[str, object]:
    """The DER terms of an objective over blocks holding units, each with its multiplier
    (None: one copy): term -> sum over units of price x (multiplier x measure), in `TERMS`
    order. `tso`: only the terms the TSO prices (`CostTerm.in_tso`). Optional terms appear
    only where some unit has them."""
    blocks = list(blocks)
    parts: dict[str, list] = {}
    present: set[str] = set()
    for kind in KINDS:
        for term in kind.cost_terms:
            if tso and not term.in_tso:
                continue
            parts.setdefault(term.name, [])
            for b, multiplier in blocks:
                for d in b.component(kind.name).values():
                    present.add(term.name)
                    measure = d.component(term.measure)
                    scaled = measure if multiplier is None else multiplier * measure
                    parts[term.name].append(term.price(options, d.unit) * scaled)
    optional = {t.name for kind in KINDS for t in kind.cost_terms if t.optional}
    return {name: pyo.quicksum(parts[name]) for name in TERMS
            if name in parts and (name in present or name not in optional)}


def der_period_cost(b: pyo.Block, t: int, options: Options) -> object:
    """The DER cost of the units under b incurred in period t (terms with a `per_period`)."""
    dt = options.durations()[t]
    parts: dict[str, list] = {}
    for kind in KINDS:
        for term in kind.cost_terms:
            if term.per_period is None:
                continue
            for d in b.component(kind.name).values():
                parts.setdefault(term.name, []).append(term.price(options, d.unit) * dt * term.per_period(d, t))
    return sum(pyo.quicksum(parts[name]) for name in TERMS if name in parts)


def der_measure(b: pyo.Block, kind: DerKind, measure: str):
    """The sum of one measure over the units of a kind under b."""
    return pyo.quicksum(d.component(measure) for d in b.component(kind.name).values())


def present_terms(ders: Iterable[FeederDers]) -> list[str]:
    """`TERMS` without the optional terms no unit among `ders` has (a scheme's terms)."""
    ders = list(ders)
    optional = {t.name: kind for kind in KINDS for t in kind.cost_terms if t.optional}
    return [name for name in TERMS if name not in optional or any(f.of(optional[name]) for f in ders)]
