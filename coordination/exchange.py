"""What crossed the TSO-DSO interface in one solve of a coordination scheme.

Every scheme records the messages between the TSO and each DSO (who sent what, how many
numbers, in which iteration), the number of coordination rounds, and which data each
operator needed to do its part. ADMM also records its residuals per iteration. Counts
are of numbers (floats) in the message; a message is one send from one operator to
another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

TSO = "tso"


def dso(feeder: str) -> str:
    """The name of the operator of a feeder in the record."""
    return f"dso:{feeder}"


@dataclass
class Message:
    sender: str  # "tso" or "dso:<feeder>"
    receiver: str
    what: str  # e.g. "P-Q region vertices and costs", "interface targets"
    n_values: int
    iteration: int = 0  # coordination round (ADMM iteration; 0 for one-shot schemes)


@dataclass
class Exchange:
    """The interface traffic of one solve."""

    scheme: str
    messages: list[Message] = field(default_factory=list)
    iterations: int = 1  # coordination rounds (ADMM iterations; 1 for one-shot schemes)
    tso_needs: list[str] = field(default_factory=list)  # data the TSO needed
    dso_needs: list[str] = field(default_factory=list)  # data each DSO needed
    residuals: list[dict[str, float]] = field(default_factory=list)  # ADMM, one dict per iteration
    converged: bool | None = None  # ADMM: residuals below tolerance

    def send(self, sender: str, receiver: str, what: str, values: object, iteration: int = 0) -> None:
        """Record one message; `values` is the payload (or its count of numbers)."""
        n = values if isinstance(values, int) else count_values(values)
        self.messages.append(Message(sender, receiver, what, n, iteration))

    @property
    def n_messages(self) -> int:
        return len(self.messages)

    @property
    def n_values(self) -> int:
        return sum(msg.n_values for msg in self.messages)

    def values_up(self) -> int:
        """Numbers sent from DSOs to the TSO."""
        return sum(msg.n_values for msg in self.messages if msg.receiver == TSO)

    def values_down(self) -> int:
        """Numbers sent from the TSO to DSOs."""
        return sum(msg.n_values for msg in self.messages if msg.sender == TSO)

    def summary(self) -> dict[str, object]:
        """Totals for a table: messages, values up and down, iterations, convergence."""
        return {"scheme": self.scheme, "messages": self.n_messages, "values": self.n_values,
                "values_up": self.values_up(), "values_down": self.values_down(),
                "iterations": self.iterations, "converged": self.converged}


def count_values(payload: object) -> int:
    """Numbers in a payload of arrays, numbers, and dicts, lists or tuples of them."""
    if payload is None or isinstance(payload, str):
        return 0
    if isinstance(payload, (int, float, np.number, bool)):
        return 1
    if isinstance(payload, np.ndarray):
        return int(payload.size)
    if isinstance(payload, Mapping):
        return sum(count_values(v) for v in payload.values())
    if isinstance(payload, (list, tuple)):
        return sum(count_values(v) for v in payload)
    if hasattr(payload, "__dataclass_fields__"):
        return sum(count_values(getattr(payload, name)) for name in payload.__dataclass_fields__)
    return 0


# What each operator needs, per scheme (the same at every solve).
NEEDS: dict[str, tuple[list[str], list[str]]] = {
    "tso_managed": (
        ["transmission network and forecasts", "every feeder's network model (topology, impedances, ratings, taps)",
         "every feeder's load forecasts per node", "every DER's data, state and forecasts", "feeder head voltages"],
        ["the DER set-points the TSO computed"],
    ),
    "hybrid": (
        ["transmission network and forecasts", "each DER's technical data, state and forecasts (no location)",
         "validated DER active-power ranges per period", "each feeder's head power at the DSO's reference dispatch",
         "each DER's head-power sensitivity"],
        ["own feeder network, load forecasts and DERs", "head voltage", "the TSO's DER active-power dispatch"],
    ),
    "dso_managed": (
        ["transmission network and forecasts", "each interface's P-Q region per period with the DSO's cost at its vertices"],
        ["own feeder network, load forecasts and DERs", "head voltage", "the TSO's interface P and Q targets"],
    ),
    "dso_first": (
        ["transmission network and forecasts", "each interface's planned P schedule (first plan, then final)"],
        ["own feeder network, load forecasts and DERs", "head voltage", "the TSO's price at the boundary bus"],
    ),
    "admm": (
        ["transmission network and forecasts", "each DSO's interface P each iteration"],
        ["own feeder network, load forecasts and DERs", "head voltage",
         "the TSO's interface P and the interface price each iteration"],
    ),
}


def needs(scheme: str) -> tuple[list[str], list[str]]:
    tso_needs, dso_needs = NEEDS[scheme]
    return list(tso_needs), list(dso_needs)


def mutable_values(block) -> int:
    """Numbers in a block's mutable Params (the data a DSO sends at every solve)."""
    import pyomo.environ as pyo

    return sum(1 for p in block.component_data_objects(pyo.Param, descend_into=True) if p.parent_component().mutable)


def centralized_exchange(feeders: Mapping, params: Mapping[str, int], first: bool, setpoints: Mapping) -> Exchange:
    """The record of a `CentralizedProblem` solve: each DSO hands the TSO its network model and
    DER data (`feeders`: FeederSetup by name; at the `first` solve) and its forecasts and DER
    state (`params`: their count per feeder; at every solve); the TSO sends back every DER's
    set-points."""
    ex = Exchange("tso_managed")
    ex.tso_needs, ex.dso_needs = needs("tso_managed")
    for name, setup in feeders.items():
        if first:
            ex.send(dso(name), TSO, "feeder network model and DER data", (setup.data, setup.ders))
        ex.send(dso(name), TSO, "load forecasts, head voltage and DER state", params[name])
        ex.send(TSO, dso(name), "DER set-points", setpoints.get(name))
    return ex
