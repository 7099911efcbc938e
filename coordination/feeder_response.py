"""LinDist3Flow as an affine map: with the regulator ratios fixed, every voltage, flow and
head power of a feeder is affine in what is injected at its nodes and in the head voltage.

    y = y0 + S_p p_net + S_q q_net + s_head v_source^2,   p_net = DER injection - load

for y the squared voltages w of every node, the flows P and Q of every branch phase and the
head powers per phase, over one period (the map is the same in every period). Loads that
follow the voltage and capacitors (Q = Q0 w) make w depend on itself: the map is the solution
of the whole linear system, those terms included, so it equals the full model exactly.

The system is the one `distribution.constraints_lindist3flow` writes (one period, injections
as free columns), read back from HiGHS and factorised once (`network_response`, which the
hybrid scheme's `validation.Sensitivities` uses as well). Maps are cached by what defines
them (the feeder's data, its ratios and the load model): feeders built on one model share
one factorisation, and a tap change computes (or finds) the map of the new ratios.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import highspy
import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from coordination.distribution import Node, constraints_lindist3flow, parameters_feeder, variables_lindist3flow
from coordination.network_data import FeederData
from coordination.solver import PersistentHighs


def network_response(solver: PersistentHighs, inputs: np.ndarray,
                     rhs_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a built LP whose equality rows determine every column but `inputs` (a square
    system in the others): J [column, input] and y0 [column] with x = y0 + J u, u the inputs'
    values (input columns map to themselves), and R [column, row] = dx / d(right-hand side)
    of the `rhs_rows`."""
    lp = solver.highs.getLp()
    a = lp.a_matrix_
    parts, shape = (np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), (lp.num_row_, lp.num_col_)
    # Column-wise once HiGHS has run, row-wise as pyomo hands it over.
    matrix = sp.csc_matrix(parts, shape=shape) if a.format_ == highspy.MatrixFormat.kColwise else sp.csr_matrix(parts, shape=shape).tocsc()
    lower, upper = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    if not np.array_equal(lower, upper):
        raise RuntimeError("network_response needs equality rows only")
    network = np.setdiff1d(np.arange(lp.num_col_), inputs)
    a_y = matrix[:, network]
    if a_y.shape[0] != a_y.shape[1]:
        raise RuntimeError(f"the network system is not square {a_y.shape}")
    lu = spla.splu(a_y.tocsc())
    jac = np.zeros((lp.num_col_, len(inputs)))
    y0 = np.zeros(lp.num_col_)
    if len(inputs):
        jac[network] = -lu.solve(matrix[:, inputs].toarray())
        jac[inputs, np.arange(len(inputs))] = 1.0
    y0[network] = lu.solve(lower)
    rhs_rows = np.zeros(0, dtype=int) if rhs_rows is None else np.asarray(rhs_rows, dtype=int)
    rhs = np.zeros((lp.num_col_, len(rhs_rows)))
    if len(rhs_rows):
        unit = np.zeros((lp.num_row_, len(rhs_rows)))
        unit[rhs_rows, np.arange(len(rhs_rows))] = 1.0
        rhs[network] = lu.solve(unit)
    return jac, y0, rhs


@dataclass
class FeederResponse:
    """The affine map of one feeder (module docstring). Outputs are rows: `w` over `nodes`,
    `P`, `Q` over `flow_nodes`, `p_head`, `q_head` over `head_phases`; each has a constant
    [row], a sensitivity to the node injections [row, node] (kW and kvar, over `nodes`), to
    the squared head voltage [row] and to the squared voltages held regulators hold [row,
    held node] (regulators "hold": their load side is an input, not a ratio)."""

    nodes: list[Node]
    held_nodes: list[Node]
    flow_nodes: list[Node]
    head_phases: list[int]
    const: dict[str, np.ndarray]
    per_p: dict[str, np.ndarray]
    per_q: dict[str, np.ndarray]
    per_head: dict[str, np.ndarray]
    per_held: dict[str, np.ndarray]

    def offsets(self, output: str, p_load: np.ndarray, q_load: np.ndarray, w_head: np.ndarray,
                w_held: np.ndarray | None = None) -> np.ndarray:
        """[row, period] of an output with no DER injection: loads p_load, q_load [node, period]
        (kW, kvar at nominal voltage, over `nodes`), squared head voltage w_head [period] and
        squared held voltages w_held [held node]."""
        out = (self.const[output][:, None] + self.per_head[output][:, None] * w_head[None, :]
               - self.per_p[output] @ p_load - self.per_q[output] @ q_load)
        if self.held_nodes:
            out += (self.per_held[output] @ w_held)[:, None]
        return out


_CACHE: dict[str, FeederResponse] = {}


def _key(data: FeederData, voltage_dependent_loads: bool, hold_regulated: bool) -> str:
    """What defines a feeder's map: its branches (impedances, ratios), loads' voltage
    dependence and nominal power, capacitors, and the load and regulator models."""
    h = hashlib.sha1(repr((voltage_dependent_loads, hold_regulated)).encode())
    h.update(repr((data.source_bus, data.nodes)).encode())
    for br in data.branches:
        h.update(repr((br.from_bus, br.to_bus, br.phases, br.kind)).encode())
        h.update(np.ascontiguousarray(br.z_ohm, dtype=complex).tobytes())
        h.update(np.asarray(br.ratio, dtype=float).tobytes())
    for ld in data.loads:
        h.update(repr((ld.bus, ld.phases, ld.vdep_p, ld.vdep_q)).encode())
        h.update(np.asarray(ld.p_kw, dtype=float).tobytes() + np.asarray(ld.q_kvar, dtype=float).tobytes())
    for cap in data.capacitors:
        h.update(repr((cap.bus, cap.phases)).encode() + np.asarray(cap.kvar, dtype=float).tobytes())
    h.update(repr({n: data.buses[n[0]].kv_ln for n in data.nodes}).encode())
    return h.hexdigest()


def feeder_response(data: FeederData, voltage_dependent_loads: bool = True,
                    hold_regulated: bool = False) -> FeederResponse:
    """The feeder's map at its current ratios (cached, see the module docstring)."""
    key = _key(data, voltage_dependent_loads, hold_regulated)
    if key not in _CACHE:
        _CACHE[key] = _compute(data, voltage_dependent_loads, hold_regulated)
    return _CACHE[key]


def _compute(data: FeederData, voltage_dependent_loads: bool, hold_regulated: bool) -> FeederResponse:
    m = pyo.ConcreteModel()
    m.feeder = pyo.Block()
    fb = m.feeder
    parameters_feeder(fb, data, [0])
    for param in (fb.p_load, fb.q_load):  # loads enter as negative injections
        for p in param.values():
            p.value = 0.0
    variables_lindist3flow(fb, data)
    root = data.source_bus
    # Injections at the source bus only reach its head power, not the network's rows.
    inner = [n for n in data.nodes if n[0] != root]
    m.x_p = pyo.Var(inner)
    m.x_q = pyo.Var(inner)
    m.x_head = pyo.Var()
    constraints_lindist3flow(fb, data, {n: {0: m.x_p[n]} for n in inner}, {n: {0: m.x_q[n]} for n in inner},
                             voltage_dependent_loads, hold_regulated)
    for p in fb.w_held.values():  # held voltages are inputs too (right-hand sides)
        p.value = 0.0
    m.head = pyo.Constraint(fb.head_phases, rule=lambda _, ph: fb.w[root, ph, 0] == m.x_head)
    # Every input in the objective, so HiGHS has a column for each (the LP is never solved).
    m.objective = pyo.Objective(expr=pyo.quicksum(m.x_p.values()) + pyo.quicksum(m.x_q.values()) + m.x_head)
    s = PersistentHighs(m)
    s.interface.set_instance(m)
    s.highs = s.interface._solver_model
    xp, xq, xh = s.positions(m.x_p), s.positions(m.x_q), s.positions([m.x_head])
    held = list(fb.held_nodes)
    con_map = s.interface._pyomo_con_to_solver_con_map
    held_rows = np.array([con_map[fb.voltage_drop[bus, ph, 0]] for bus, ph in held], dtype=int)
    jac, y0, by_held = network_response(s, np.concatenate([xp, xq, xh]), held_rows)
    n_in = len(inner)
    index = {n: i for i, n in enumerate(data.nodes)}
    at = np.array([index[n] for n in inner], dtype=int)

    def rows(cols: np.ndarray, coefs: np.ndarray | None = None, constant: np.ndarray | float = 0.0):
        """Constant, per-node p and q sensitivities (over all nodes) and head sensitivity of
        the outputs coefs @ columns (identity when coefs is None)."""
        j = jac[cols] if coefs is None else coefs @ jac[cols]
        c = (y0[cols] if coefs is None else coefs @ y0[cols]) + constant
        r = np.atleast_2d(by_held[cols] if coefs is None else coefs @ by_held[cols])
        j = np.atleast_2d(j)
        per_p = np.zeros((j.shape[0], len(data.nodes)))
        per_q = np.zeros_like(per_p)
        per_p[:, at] = j[:, :n_in]
        per_q[:, at] = j[:, n_in:2 * n_in]
        return np.atleast_1d(c), per_p, per_q, j[:, 2 * n_in], r

    out = {
        "w": rows(s.positions(fb.w[bus, ph, 0] for bus, ph in data.nodes)),
        "P": rows(s.positions(fb.P[bus, ph, 0] for bus, ph in fb.flow_nodes)),
        "Q": rows(s.positions(fb.Q[bus, ph, 0] for bus, ph in fb.flow_nodes)),
    }
    for name, expr in (("p_head", fb.p_head), ("q_head", fb.q_head)):
        parts = []
        for ph in fb.head_phases:
            form = s.linear(expr[ph, 0])
            c, per_p, per_q, per_head, per_held = rows(form.cols, form.coefs, float(pyo.value(form.constant)))
            # What is drawn at the source bus itself reaches the head directly.
            per_p[0, index[(root, ph)]] -= 1.0
            per_q[0, index[(root, ph)]] -= 1.0
            parts.append((c, per_p, per_q, per_head, per_held))
        out[name] = tuple(np.concatenate([p[k] for p in parts]) for k in range(5))
    return FeederResponse(list(data.nodes), held, list(fb.flow_nodes), list(fb.head_phases),
                          *({k: v[i] for k, v in out.items()} for i in range(5)))
