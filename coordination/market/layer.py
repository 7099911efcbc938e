"""One clearing of a flexibility market: which bids it may clear, which grids' limits it
keeps and which DSO interfaces may move, as an LP (a MIP with block, partial or exclusive
bids) solved with HiGHS. Every market model of `coordination.market.clearing` is a sequence
of these, each starting from the state the ones before it left.

Columns: the cleared MW of each allowed bid and period; a binary per integer-format bid;
the extra import of each DSO whose interface is free (MW at its boundary, all copies); soft
limit slacks. Rows:
- `head`: per DSO and period, extra import = what its cleared bids change at its head
  (a free interface, priced if the layer prices it), or that change = a target (0: the
  DSO's procurement leaves the interface where it is);
- `balance` (with the TSO's grid): the transmission's injections balance again;
- `line` (with the TSO's grid): flow limits of every rated line;
- `voltage` (with a DSO's grid): squared-voltage limits of every monitored node.
Slacks on `line` and `voltage` cost `case.overload_price` and `case.voltage_price`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import highspy
import numpy as np
import scipy.sparse as sp

from coordination.market.bids import UP
from coordination.market.case import TSO, MarketCase, effects

INF = highspy.kHighsInf


@dataclass
class Layer:
    """What one clearing sees (module docstring)."""

    name: str
    procurer: str  # the SO that pays for what this layer clears
    allowed: np.ndarray  # [bid] bool
    quantity_mw: np.ndarray  # [bid, period] offered now (what earlier layers left)
    grids: set[str]  # SOs whose limits hold
    free: set[str] = field(default_factory=set)  # DSOs whose import may change
    # DSOs whose import is a free column here with no head row: another layer holds their bids
    # (the TSO's side of a decomposed market, `coordination.market.admm`).
    open: set[str] = field(default_factory=set)
    target_mw: Mapping[str, np.ndarray] = field(default_factory=dict)  # DSO -> import change its bids must make (not free)
    price: Mapping[str, np.ndarray] = field(default_factory=dict)  # DSO -> currency/MWh on its extra import


@dataclass
class LayerResult:
    name: str
    procurer: str
    status: str
    cleared_mw: np.ndarray  # [bid, period]
    imports_mw: dict[str, np.ndarray]  # DSO -> extra import this layer made (all copies)
    procurement: float  # currency: cleared quantity x price
    interface_payment: float  # currency: priced extra imports
    penalty: float  # currency: soft limits used
    penalty_by_so: dict[str, float]  # of which in each SO's grid
    head_duals: dict[str, np.ndarray]  # DSO -> dual of its head row per period (currency per MW in the period)
    balance_duals: np.ndarray | None  # [period]
    solve_s: float

    @property
    def optimal(self) -> bool:
        return self.status == "Optimal"


class _Columns:
    def __init__(self):
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.cost: list[float] = []
        self.integer: list[bool] = []

    def add(self, lower: float, upper: float, cost: float, integer: bool = False) -> int:
        self.lower.append(lower)
        self.upper.append(upper)
        self.cost.append(cost)
        self.integer.append(integer)
        return len(self.cost) - 1


class _Rows:
    def __init__(self):
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.r: list[int] = []  # the matrix's entries, as three lists (a list of tuples costs seconds to unzip)
        self.c: list[int] = []
        self.v: list[float] = []

    def add(self, terms: list[tuple[int, float]], lower: float, upper: float) -> int:
        r = len(self.lower)
        self.lower.append(lower)
        self.upper.append(upper)
        kept = [(c, v) for c, v in terms if v != 0.0]
        self.r += [r] * len(kept)
        self.c += [c for c, _ in kept]
        self.v += [v for _, v in kept]
        return r


class LayerModel:
    """A layer built as a HiGHS model; `solve` clears it. Kept after solving so coalitions
    (cost allocation) re-solve it with bounds changed instead of building anew."""

    def __init__(self, case: MarketCase, layer: Layer, state_mw: np.ndarray | None = None):
        self.case, self.layer = case, layer
        T = case.periods
        state = np.zeros((len(case.bids), T)) if state_mw is None else state_mw
        now = effects(case, state)
        cols, rows = _Columns(), _Rows()
        self.rows_of: dict[str, list[int]] = {so: [] for so in case.sos}  # each grid's limit rows (coalitions relax them)
        self.slacks_of: dict[str, list[int]] = {so: [] for so in case.sos}  # and their slack columns
        hours = case.hours
        mult = {TSO: 1.0, **{d: g.multiplier for d, g in case.dsos.items()}}
        # Bids: x[k, t] and, for block / partial / exclusive bids, z[k].
        self.x: dict[tuple[int, int], int] = {}
        self.z: dict[int, int] = {}
        for k, b in enumerate(case.bids):
            if not layer.allowed[k]:
                continue
            for t in range(T):
                self.x[k, t] = cols.add(0.0, float(layer.quantity_mw[k, t]), float(b.price[t] * hours[t] * mult[b.so]))
            if b.integer:
                self.z[k] = cols.add(0.0, 1.0, 0.0, integer=True)
                for t in range(T):
                    q = float(layer.quantity_mw[k, t])
                    if b.format == "indivisible":
                        rows.add([(self.x[k, t], 1.0), (self.z[k], -q)], 0.0, 0.0)
                    else:
                        low = min(b.min_mw, q) if b.format == "partial" else 0.0
                        rows.add([(self.x[k, t], 1.0), (self.z[k], -q)], -INF, 0.0)
                        rows.add([(self.x[k, t], 1.0), (self.z[k], -low)], 0.0, INF)
        groups: dict[str, list[int]] = {}
        for k, col in self.z.items():
            if case.bids[k].group is not None:
                groups.setdefault(case.bids[k].group, []).append(col)
        for members in groups.values():
            rows.add([(c, 1.0) for c in members], -INF, 1.0)
        # Interfaces: the extra import of free DSOs, priced or not; the head rows.
        self.imp: dict[tuple[str, int], int] = {}
        for d in sorted(layer.free | layer.open):
            price = layer.price.get(d)
            for t in range(T):
                self.imp[d, t] = cols.add(-INF, INF, 0.0 if price is None else float(price[t] * hours[t]))
        self.head_rows: dict[tuple[str, int], int] = {}
        for d, g in case.dsos.items():
            members = [k for k in range(len(case.bids)) if layer.allowed[k] and case.bids[k].so == d]
            if d not in layer.free and not members:
                continue
            target = layer.target_mw.get(d, np.zeros(T))
            for t in range(T):
                terms = [(self.x[k, t], -g.multiplier * g.head_sens[case.bids[k].node] * case.bids[k].direction) for k in members]
                if d in layer.free:
                    self.head_rows[d, t] = rows.add([(self.imp[d, t], 1.0), *terms], 0.0, 0.0)
                else:
                    self.head_rows[d, t] = rows.add([(c, -v) for c, v in terms], float(target[t]), float(target[t]))
        # The transmission: balance and line limits, over its bids and the free imports.
        self.balance_rows: dict[int, int] = {}
        tso = case.tso
        if TSO in layer.grids:
            tso_bids = [k for k in range(len(case.bids)) if layer.allowed[k] and case.bids[k].so == TSO]
            rated = np.flatnonzero(np.isfinite(tso.rating_mw))
            for t in range(T):
                # injection change per bus of this layer's columns, as sparse terms per bus
                by_bus: dict[int, list[tuple[int, float]]] = {}
                for k in tso_bids:
                    by_bus.setdefault(case.bids[k].node, []).append((self.x[k, t], float(case.bids[k].direction)))
                for d in sorted(layer.free | layer.open):
                    by_bus.setdefault(tso.boundary[d], []).append((self.imp[d, t], -1.0))
                self.balance_rows[t] = rows.add([term for terms in by_bus.values() for term in terms],
                                                -float(now["imbalance_mw"][t]), -float(now["imbalance_mw"][t]))
                buses = list(by_bus)
                for line in rated:
                    over, under = cols.add(0.0, INF, case.overload_price * hours[t]), cols.add(0.0, INF, case.overload_price * hours[t])
                    self.slacks_of[TSO] += [over, under]
                    terms = [(c, tso.ptdf[line, bus] * v) for bus in buses for c, v in by_bus[bus]]
                    f, limit = float(now["flows_mw"][line, t]), float(tso.rating_mw[line])
                    self.rows_of[TSO].append(rows.add([*terms, (over, -1.0), (under, 1.0)], -limit - f, limit - f))
        # Distribution voltages, over the DSO's bids.
        for d, g in case.dsos.items():
            if d not in layer.grids:
                continue
            members = [k for k in range(len(case.bids)) if layer.allowed[k] and case.bids[k].so == d]
            w_now = now["w"][d]
            # Rows no bid of the market moves (a regulator's output node) are the same whatever it
            # clears: left out, so a violation there costs no constant penalty in every layer and
            # coalition (`case.violations` still counts it).
            points = sorted({case.bids[k].node for k in range(len(case.bids)) if case.bids[k].so == d})
            movable = np.abs(g.w_sens[:, points]).max(axis=1, initial=0.0) > 0.0
            for i in range(len(g.rows)):
                if not movable[i]:
                    continue
                for t in range(T):
                    terms = [(self.x[k, t], g.w_sens[i, case.bids[k].node] * case.bids[k].direction) for k in members]
                    if not terms and g.v_min ** 2 <= w_now[i, t] <= g.v_max ** 2:
                        continue  # nothing this layer does moves it, and it holds
                    price = case.voltage_price * hours[t] * g.multiplier
                    over, under = cols.add(0.0, INF, price), cols.add(0.0, INF, price)
                    self.slacks_of[d] += [over, under]
                    self.rows_of[d].append(rows.add([*terms, (over, -1.0), (under, 1.0)],
                                                    g.v_min ** 2 - w_now[i, t], g.v_max ** 2 - w_now[i, t]))
        self.n_cols, self.n_rows = len(cols.cost), len(rows.lower)
        self._bounds = (np.array(cols.lower), np.array(cols.upper), np.array(rows.lower), np.array(rows.upper))
        self._cost = np.array(cols.cost)
        self.highs = _highs(cols, rows)
        self.is_mip = any(cols.integer)

    def restrict(self, members: set[str]) -> None:
        """Only the SOs in `members` take part (a coalition of the cost allocation): the others'
        bids offer nothing, their limits are not this market's to keep, and an interface moves
        only between two members (the TSO and a member DSO). Undone by `restrict(all SOs)`."""
        col_lo, col_up, row_lo, row_up = (a.copy() for a in self._bounds)
        for (k, _t), c in self.x.items():
            if self.case.bids[k].so not in members:
                col_up[c] = 0.0
        for (d, _t), c in self.imp.items():
            if not {TSO, d} <= members:
                col_lo[c] = col_up[c] = 0.0
        for so, rows in self.rows_of.items():
            if so not in members and rows:
                row_lo[rows], row_up[rows] = -INF, INF
        n, m = len(col_lo), len(row_lo)
        self.highs.changeColsBounds(n, np.arange(n, dtype=np.int32), col_lo, col_up)
        self.highs.changeRowsBounds(m, np.arange(m, dtype=np.int32), row_lo, row_up)

    def objective(self) -> float:
        return float(self.highs.getInfo().objective_function_value)

    def solve(self) -> LayerResult:
        case, layer = self.case, self.layer
        T = case.periods
        start = time.perf_counter()
        status = run(self.highs)
        cleared = np.zeros((len(case.bids), T))
        imports = {d: np.zeros(T) for d in case.dsos}
        duals: dict[str, np.ndarray] = {}
        balance = None
        procurement = payment = penalty = 0.0
        penalty_by_so = dict.fromkeys(case.sos, 0.0)
        if status == "Optimal":
            sol = self.highs.getSolution()
            x = np.asarray(sol.col_value)
            for (k, t), c in self.x.items():
                cleared[k, t] = x[c]
            cleared = np.clip(cleared, 0.0, None)
            for (d, t), c in self.imp.items():
                imports[d][t] = x[c]
            for d in case.dsos:
                if d not in layer.free and any(key[0] == d for key in self.head_rows):
                    imports[d] = effects(case, cleared)["imports_mw"][d]
            bid_cols = np.array(list(self.x.values()), dtype=int)
            imp_cols = np.array(list(self.imp.values()), dtype=int)
            procurement = float(self._cost[bid_cols] @ x[bid_cols]) if bid_cols.size else 0.0
            payment = float(self._cost[imp_cols] @ x[imp_cols]) if imp_cols.size else 0.0
            penalty = float(self._cost @ x) - procurement - payment
            for so, slack in self.slacks_of.items():
                penalty_by_so[so] = float(self._cost[slack] @ x[slack]) if slack else 0.0
            if not self.is_mip:
                y = np.asarray(sol.row_dual)
                for (d, t), r in self.head_rows.items():
                    duals.setdefault(d, np.zeros(T))[t] = y[r]
                if self.balance_rows:
                    balance = np.array([y[self.balance_rows[t]] for t in range(T)])
        return LayerResult(layer.name, layer.procurer, status, cleared, imports, procurement, payment, penalty,
                           penalty_by_so, duals, balance, time.perf_counter() - start)


def run(highs: highspy.Highs) -> str:
    """Solve; where HiGHS gives up (its dual simplex stops on "excessive dual values" when
    soft-limit penalties of 1e6 meet bid prices of 5, or a warm start it cannot carry), once
    more from scratch, then with the objective scaled down, then by interior point. The
    model status's name."""
    highs.run()
    status = highs.modelStatusToString(highs.getModelStatus())
    for option, value in ((None, None), ("user_objective_scale", -4), ("solver", "ipm")):
        if status == "Optimal":
            break
        highs.clearSolver()
        if option is not None:
            highs.setOptionValue(option, value)
        highs.run()
        status = highs.modelStatusToString(highs.getModelStatus())
    highs.setOptionValue("user_objective_scale", 0)
    highs.setOptionValue("solver", "choose")
    return status


def _highs(cols: _Columns, rows: _Rows) -> highspy.Highs:
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = len(cols.cost), len(rows.lower)
    lp.col_cost_ = np.array(cols.cost)
    lp.col_lower_, lp.col_upper_ = np.array(cols.lower), np.array(cols.upper)
    lp.row_lower_, lp.row_upper_ = np.array(rows.lower), np.array(rows.upper)
    r, c, v = np.array(rows.r, dtype=np.int64), np.array(rows.c, dtype=np.int64), np.array(rows.v, dtype=float)
    a = sp.csc_matrix((v, (r, c)), shape=(lp.num_row_, lp.num_col_))
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    if any(cols.integer):
        lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in cols.integer]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.passModel(lp)
    return h


def up_or_down(direction: int) -> str:
    return "up" if direction == UP else "down"
