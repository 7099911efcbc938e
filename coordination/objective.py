"""Prices, penalties and the objective as a sum of named terms.

Every limit that a bad period could make impossible to meet is soft: the constraint
functions add non-negative slacks and an Expression that measures their use
(unserved and spilled MWh, transmission and feeder overloads, voltage violations in
pu^2 h, battery SOC and EV energy shortfalls in kWh). Here those measures get prices,
large enough that a slack is used only when nothing else helps.

The objective is built as m.cost[name], one named Expression per term, so every term
can be recorded after each solve, and m.objective = their sum.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyomo.environ as pyo

# The order objectives list their terms in. The DER terms are declared with their prices by
# the DER kinds (`coordination.ders`); a kind's terms not named here follow these, in the
# kinds' order (`coordination.problem.TERMS` is the full list). The order is part of the
# results (the objective's sum and HiGHS' path follow it), so it is kept as it was.
TERMS = ("generation", "curtailment", "battery_degradation", "load_shift", "reactive", "penalty_unserved",
         "penalty_spilled", "penalty_transmission_overload", "penalty_feeder_overload", "penalty_voltage",
         "penalty_soc_target", "penalty_ev_unmet")
TRANSMISSION_TERMS = ("generation", "penalty_unserved", "penalty_spilled", "penalty_transmission_overload")


@dataclass
class Prices:
    """Costs of using flexibility (currency per MWh unless stated)."""

    curtailment: float = 5.0  # PV energy available but not used
    battery_degradation: float = 10.0  # per MWh charged plus discharged
    load_shift: float = 5.0  # per MWh moved up or down
    reactive: float = 0.5  # per Mvarh of |Q| from PV and battery inverters


@dataclass
class Penalties:
    """Prices of the slacks of soft limits; they dwarf generation costs on purpose."""

    unserved: float = 10_000.0  # per MWh of load not served (value of lost load)
    spilled: float = 1_000.0  # per MWh of generation that cannot be absorbed
    transmission_overload: float = 5_000.0  # per MWh above a branch rating
    feeder_overload: float = 5_000.0  # per MVAh above a feeder branch rating (per phase)
    voltage: float = 100_000.0  # per pu^2 h outside the voltage band (per node and phase)
    soc_target: float = 500.0  # per MWh the batteries end below their target
    ev_unmet: float = 1_000.0  # per MWh an EV does not get within the horizon


def transmission_terms(tb: pyo.Block, penalties: Penalties) -> dict[str, object]:
    """The terms of the transmission DC-OPF (`coordination.transmission`)."""
    return {
        "generation": tb.cost_generation,
        "penalty_unserved": penalties.unserved * tb.unserved_mwh,
        "penalty_spilled": penalties.spilled * tb.spilled_mwh,
        "penalty_transmission_overload": penalties.transmission_overload * tb.flow_violation,
    }


def feeder_network_terms(feeders: Iterable[tuple[pyo.Block, float | None]], penalties: Penalties) -> dict[str, object]:
    """The feeder networks' soft-limit terms over feeder blocks, each with its multiplier
    (None: one copy)."""
    feeders = list(feeders)

    def total(measure: str):
        return pyo.quicksum(fb.component(measure) if k is None else k * fb.component(measure) for fb, k in feeders)

    return {
        "penalty_feeder_overload": penalties.feeder_overload / 1000.0 * total("flow_violation"),
        "penalty_voltage": penalties.voltage * total("voltage_violation"),
    }


def in_order(terms: dict[str, object]) -> dict[str, object]:
    """Terms in `TERMS` order, then any others (interface terms) as given."""
    return {**{name: terms[name] for name in TERMS if name in terms},
            **{name: v for name, v in terms.items() if name not in TERMS}}


def objective_terms(m: pyo.Block, terms: dict[str, object]) -> None:
    """m.cost[name] for each term, and m.objective = the sum (minimised)."""
    names = list(terms)
    m.cost_terms = pyo.Set(initialize=names, ordered=True)
    m.cost = pyo.Expression(m.cost_terms, rule=lambda _, name: terms[name])
    m.objective = pyo.Objective(expr=pyo.quicksum(m.cost[name] for name in names), sense=pyo.minimize)


def term_values(m: pyo.Block) -> dict[str, float]:
    """The value of every named term (needs the variables in them loaded)."""
    return {name: float(pyo.value(m.cost[name])) for name in m.cost_terms}
