"""DC-OPF: merit order, a binding line, LMPs, ramps, piecewise-linear costs and losses."""

from __future__ import annotations

import pyomo.environ as pyo
import pytest

from coordination.network_data import Branch, Generator, Load, TransmissionData, transmission_data
from coordination.solver import PersistentHighs
from coordination.transmission import add_dcopf, dispatch, lmps, set_bus_load, set_generator_limits
from tests.test_coordination_network_data import three_bus_net


def dcopf(data: TransmissionData, periods=(0,), dt: float = 1.0, **kw):
    m = pyo.ConcreteModel()
    m.tx = pyo.Block()
    add_dcopf(m.tx, data, list(periods), dt, **kw)
    tx = m.tx
    m.objective = pyo.Objective(expr=tx.cost_generation + 1e4 * tx.unserved_mwh + 1e3 * tx.spilled_mwh
                                + 5e3 * tx.flow_violation)
    return m, PersistentHighs(m)


def test_three_bus_binding_line_dispatch_and_lmps():
    """Cheap G1 (10/MWh) at bus 0, dear G2 (30/MWh) at bus 1, 150 MW at bus 2, line 0-2 rated 80 MW.
    PTDFs: 2/3 of an injection at 0 (1/3 of one at 1) flows on 0-2, so 2 a + b = 240, a + b = 150:
    a = 90, b = 60; flows 0-1 = 10, 0-2 = 80, 1-2 = 70. LMPs: 10, 30, and at bus 2 one more MW
    means da = -1, db = +2: -10 + 60 = 50."""
    m, solver = dcopf(transmission_data(three_bus_net()))
    stats = solver.solve()
    assert stats.optimal
    assert stats.objective == pytest.approx(90 * 10 + 60 * 30)
    values = solver.values([m.tx.pg, m.tx.flow, m.tx.s_flow])
    assert dispatch(values, m.tx) == {"ext_grid:0": pytest.approx([90.0]), "gen:0": pytest.approx([60.0])}
    assert [values[m.tx.flow[f"line:{i}", 0]] for i in range(3)] == pytest.approx([10.0, 80.0, 70.0])
    assert max(values[v] for v in m.tx.s_flow.values()) == pytest.approx(0.0, abs=1e-9)
    prices = lmps(solver.duals([m.tx.power_balance]), m.tx)
    assert [prices[b][0] for b in (0, 1, 2)] == pytest.approx([10.0, 30.0, 50.0])


def test_a_rating_margin_plans_lines_below_their_rating():
    """The three-bus case with a 25 % margin: line 0-2 may carry 60 of its 80 MW, so
    2 a + b = 180 and a + b = 150 give a = 30, b = 120 (dearer by 30 MW x 20/MWh)."""
    data = transmission_data(three_bus_net())
    derated = data.derated(0.25)
    assert [b.rating_mw for b in derated.branches] == pytest.approx([0.75 * b.rating_mw for b in data.branches])
    assert data.derated(0.0) is data and data.branches[1].rating_mw == pytest.approx(80.0)  # the original stays
    m, solver = dcopf(derated)
    stats = solver.solve()
    assert stats.objective == pytest.approx(30 * 10 + 120 * 30)
    values = solver.values([m.tx.pg, m.tx.flow])
    assert values[m.tx.flow["line:1", 0]] == pytest.approx(60.0)


def test_three_bus_resolve_with_new_load_and_half_hour_periods():
    """Re-solve after changing a mutable load; LMPs are per MWh whatever the period length."""
    m, solver = dcopf(transmission_data(three_bus_net()), periods=(0, 1), dt=0.5)
    solver.solve()
    set_bus_load(m.tx, {2: [60.0, 150.0]})  # 60 MW: G1 alone, flow 0-2 = 40 < 80
    stats = solver.solve()
    assert stats.objective == pytest.approx(0.5 * (60 * 10) + 0.5 * (90 * 10 + 60 * 30))
    prices = lmps(solver.duals([m.tx.power_balance]), m.tx, dt_hours=0.5)
    assert prices[2] == pytest.approx([10.0, 50.0])


def test_ramp_limits_and_unserved_energy():
    """One bus, a cheap unit that ramps 20 MW/h from 50 MW and a dear one; then more load than
    all generation: the shortfall is unserved energy, not an infeasible problem."""
    data = TransmissionData(100.0, [0], 0, [], [
        Generator("cheap", 0, 0.0, 200.0, c1=10.0, ramp_up_mw_per_h=20.0, ramp_down_mw_per_h=20.0, p_mw=50.0),
        Generator("dear", 0, 0.0, 100.0, c1=40.0),
    ], [Load("l", 0, 100.0)])
    m, solver = dcopf(data, periods=(0, 1, 2))
    set_bus_load(m.tx, {0: [100.0, 100.0, 400.0]})
    stats = solver.solve()
    assert stats.optimal
    values = solver.values([m.tx.pg, m.tx.unserved])
    assert [values[m.tx.pg["cheap", t]] for t in range(3)] == pytest.approx([70.0, 90.0, 110.0])
    assert [values[m.tx.pg["dear", t]] for t in range(3)] == pytest.approx([30.0, 10.0, 100.0])
    assert values[m.tx.unserved[0, 2]] == pytest.approx(400.0 - 210.0)
    # From 100 MW, with the dear unit cut to 50 MW in the last period: spilling a MW (1000)
    # is cheaper than not serving one (10 000), so the cheap unit ramps all the way,
    # 120, 140, 160, spilling 20 and 40 MW on the way.
    set_generator_limits(m.tx, p_prev_mw={"cheap": 100.0}, p_max_mw={"dear": [100.0, 100.0, 50.0]})
    solver.solve()
    values = solver.values([m.tx.pg, m.tx.unserved, m.tx.spilled])
    assert [values[m.tx.pg["cheap", t]] for t in range(3)] == pytest.approx([120.0, 140.0, 160.0])
    assert [values[m.tx.spilled[0, t]] for t in range(3)] == pytest.approx([20.0, 40.0, 0.0], abs=1e-9)
    assert values[m.tx.unserved[0, 2]] == pytest.approx(400.0 - 160.0 - 50.0)


def test_piecewise_linear_quadratic_cost():
    """cost = 0.1 p^2 on [0, 100] in 4 segments: at p = 50 (a breakpoint) exactly 250, at
    p = 60 on the secant from 50 to 75: 250 + 12.5 * 10 = 375 (the parabola says 360)."""
    data = TransmissionData(100.0, [0], 0, [], [Generator("g", 0, 0.0, 100.0, c2=0.1)], [Load("l", 0, 50.0)])
    m, solver = dcopf(data, cost_segments=4)
    assert solver.solve().objective == pytest.approx(250.0)
    set_bus_load(m.tx, {0: [60.0]})
    assert solver.solve().objective == pytest.approx(375.0)


def test_losses_two_bus():
    """100 MW load over a line with r = 0.01 pu (loss = r f^2 / base MW), secants through 0, 50,
    100, 150, 200 MW. Half the loss is taken at each end, so f = 100 + L/2 lies on the secant
    from 100 to 150 MW: L = 0.025 f - 1.5 = 1 + 0.0125 L, L = 1 / 0.9875; the unit supplies 100 + L."""
    data = TransmissionData(100.0, [0, 1], 0, [Branch("l", 0, 1, 0.1, r_pu=0.01, rating_mw=200.0)],
                            [Generator("g", 0, 0.0, 500.0, c1=10.0)], [Load("l", 1, 100.0)])
    m, solver = dcopf(data, losses=True, loss_segments=4)
    solver.solve()
    values = solver.values([m.tx.pg, m.tx.loss, m.tx.flow])
    loss = 1.0 / 0.9875
    assert values[m.tx.loss["l", 0]] == pytest.approx(loss)
    assert values[m.tx.pg["g", 0]] == pytest.approx(100.0 + loss)
    assert values[m.tx.flow["l", 0]] == pytest.approx(100.0 + loss / 2)
