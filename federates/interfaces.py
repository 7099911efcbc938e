"""The federation's public interface: every HELICS publication, declared once.

Each `Publication` gives its key pattern, HELICS type, units string, producer and, for a
vector, its named fields in order. Federates register their publications and subscriptions
from these entries (`federates.base.register_publication`, `subscribe`), producers write and
readers index vector fields by name, resolved once at setup to positions (`layout`,
`positions`), so a field inserted here moves every producer and reader with it. The
publication and DER vector tables of docs/interfaces.md are generated from this module
(`python -m tandem.generated_docs`; tests/test_interfaces.py checks they match).

One value per quantity group and step keeps the message count, which dominates the per-step
cost of the federation, low. All publications are global, so an observer federate (e.g.
`helics_recorder`) can subscribe to them by key. Metadata are JSON strings published once in
initializing mode.

Time: step k of a run is at HELICS time (k + 1) * step_seconds. Transmission and feeders are
uninterruptible and exchange values at exactly those times; the recorder reads each step half
a step later, after all iterations have settled.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from grid.ders.registry import READINGS

# HELICS federate names of the single federates; feeder groups are `feeder_group(g)`.
TRANSMISSION = "transmission"
RECORDER = "recorder"
COORDINATOR = "coordinator"


FEEDER_GROUP = "feeders_{group}"  # one federate per feeder group (process)


def feeder_group(index: int) -> str:
    return FEEDER_GROUP.format(group=index)


@dataclass(frozen=True)
class Field:
    """A named part of a vector: one value, or with `per`, one value per item of a group whose
    size the reader learns elsewhere (a metadata list, the boundary buses, ...)."""

    name: str
    units: str
    description: str
    per: str | None = None  # the group: its size is sizes[per] in `Publication.layout`


@dataclass(frozen=True)
class Publication:
    """One HELICS publication (a key pattern: one publication per feeder, bus, ...)."""

    key: str  # pattern, e.g. "feeder/{feeder}/power"
    type: str  # HELICS type: "vector", "complex" or "string"
    units: str  # HELICS units string
    producer: str  # federate that publishes it
    description: str
    when: str
    fields: tuple[Field, ...] = ()  # vectors: the elements in order

    def name(self, **parts) -> str:
        """The key of one publication, e.g. FEEDER_POWER.name(feeder="f13")."""
        return self.key.format(**parts)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.key} has no field {name!r}; it has {', '.join(f.name for f in self.fields)}")

    def layout(self, sizes: Mapping[str, int] | None = None, upto: Sequence[str] | None = None) -> dict[str, int | slice]:
        """Position of every field in the vector: an index for a single value, a slice for a
        group (its length from `sizes[field.per]`). With `upto`, only as far as those fields,
        so the sizes of groups after them are not needed."""
        out: dict[str, int | slice] = {}
        left = set(upto) if upto is not None else None
        at = 0
        for f in self.fields:
            if left is not None and not left:
                break
            if f.per is None:
                out[f.name] = at
                at += 1
            else:
                if sizes is None or f.per not in sizes:
                    raise KeyError(f"{self.key}: the size of {f.per!r} (field {f.name}) is needed")
                out[f.name] = slice(at, at + int(sizes[f.per]))
                at += int(sizes[f.per])
            if left is not None:
                left.discard(f.name)
        if left:
            raise KeyError(f"{self.key} has no field {sorted(left)[0]!r}; it has {', '.join(f.name for f in self.fields)}")
        return out

    def length(self, sizes: Mapping[str, int] | None = None) -> int:
        """Elements of the whole vector."""
        return sum(1 if f.per is None else int(sizes[f.per]) for f in self.fields)

    def check_written(self, written: Sequence[str]) -> None:
        """A producer's promise that it writes every field once: else a field added here
        would go out unset."""
        declared = [f.name for f in self.fields]
        if sorted(written) != sorted(declared):
            raise RuntimeError(f"{self.key}: the producer writes {', '.join(written)}; the table declares {', '.join(declared)}")

    def positions(self, names: Sequence[str], sizes: Mapping[str, int] | None = None) -> int | slice | np.ndarray:
        """Where the named fields are, for indexing the vector: one field's own position, a
        slice for several single fields next to each other in this order, else index arrays."""
        layout = self.layout(sizes, upto=names)
        if len(names) == 1:
            return layout[names[0]]
        spots = [layout[n] for n in names]
        if all(isinstance(s, int) for s in spots) and spots == list(range(spots[0], spots[0] + len(spots))):
            return slice(spots[0], spots[-1] + 1)
        return np.concatenate([np.arange(s.start, s.stop) if isinstance(s, slice) else [s] for s in spots]).astype(int)


def _fields(units: str, *names: str, per: str | None = None, description: str = "") -> tuple[Field, ...]:
    return tuple(Field(n, units, description, per) for n in names)


# -- transmission ----------------------------------------------------------------------------
BOUNDARY_VOLTAGE = Publication(
    "transmission/boundary/{bus}/voltage", "complex", "pu", TRANSMISSION,
    "vm·e^(j·va) at the bus, rectangular (real, imag), pu",
    "initializing mode (initial operating point); loose: once per step after the solve; iterative: "
    "before every further iteration of a step (not after the final solve)",
)
BOUNDARY_LOAD = Publication(
    "transmission/boundary/load", "vector", "MW,Mvar", TRANSMISSION,
    "result of the `feeders@<bus>` load element of each boundary bus",
    "once per step, after the step's final solve",
    (Field("p_mw", "MW", "active power of each boundary bus's feeder load", "boundary"),
     Field("q_mvar", "Mvar", "reactive power of each boundary bus's feeder load", "boundary")),
)
TRANSMISSION_BUS_VM = Publication(
    "transmission/bus/vm_pu", "vector", "pu", TRANSMISSION,
    "every bus, in `net.bus` order (= `bus_names` in the metadata)", "once per step",
    (Field("vm_pu", "pu", "voltage magnitude", "bus"),),
)
TRANSMISSION_BUS_VA = Publication(
    "transmission/bus/va_deg", "vector", "deg", TRANSMISSION, "every bus, same order", "once per step",
    (Field("va_deg", "deg", "voltage angle", "bus"),),
)
TRANSMISSION_BRANCH_LOADING = Publication(
    "transmission/branch/loading_percent", "vector", "%", TRANSMISSION,
    "`net.line` then `net.trafo` rows (= `branch_names`: `line:<i>`, `trafo:<i>`)", "once per step",
    (Field("loading_percent", "%", "current over rating", "branch"),),
)
COUPLING = Publication(
    "transmission/coupling", "vector", "", TRANSMISSION, "converged is 1.0 or 0.0", "once per step",
    (Field("iterations", "", "transmission solves in the step"),
     Field("mismatch_pu", "pu", "largest boundary voltage change between the voltage the feeders used and the final one"),
     Field("converged", "", "mismatch within the coupling tolerance")),
)
TRANSMISSION_TIMING = Publication(
    "transmission/timing", "vector", "s", TRANSMISSION,
    "cumulative since the first step: seconds in transmission solves, seconds blocked in HELICS time requests",
    "once per step",
    (Field("power_flow_s", "s", "cumulative power flow time"), Field("wait_s", "s", "cumulative time waiting for HELICS")),
)
MULTIPLIERS = Publication(
    "transmission/multipliers", "vector", "", TRANSMISSION, "copies behind each feeder, scenario order",
    "once, at step 0 (in a resumed run: at its first step)",
    (Field("multiplier", "", "identical copies behind the bus", "feeder"),),
)
TRANSMISSION_METADATA = Publication(
    "transmission/metadata", "string", "", TRANSMISSION,
    'JSON `{"bus_names": [...], "branch_names": [...], "boundary_buses": [...]}`; bus names are the indices as strings',
    "once, initializing mode",
)
GENERATION_COST = Publication(
    "transmission/generation_cost", "vector", "1/h", TRANSMISSION,
    "the network's polynomial generator costs (`poly_cost`) at the step's operating point, currency per hour",
    "every step",
    (Field("cost_rate", "1/h", "generation cost rate"),),
)

# -- feeders ---------------------------------------------------------------------------------
FEEDER_POWER = Publication(
    "feeder/{feeder}/power", "vector", "kW,kvar", FEEDER_GROUP,
    "power one copy draws from its source and its own losses, kW and kvar",
    "after every feeder solve (once per step in loose, once per iteration in iterative coupling)",
    (*_fields("kW", "p_a", "p_b", "p_c", description="active power drawn on the phase"),
     Field("p_total", "kW", "active power drawn"),
     *_fields("kvar", "q_a", "q_b", "q_c", description="reactive power drawn on the phase"),
     Field("q_total", "kvar", "reactive power drawn"),
     Field("losses_kw", "kW", "active power losses"),
     Field("losses_kvar", "kvar", "reactive power losses")),
)
FEEDER_VOLTAGES = Publication(
    "feeder/{feeder}/voltages", "vector", "", FEEDER_GROUP,
    "lowest and highest node voltage (pu) with their nodes as 0-based indices into `node_names`, the number of "
    "nodes outside 0.95–1.05 pu, and the voltage unbalance factor \\|V2\\|/\\|V1\\| at `head_bus`; the source bus is excluded",
    "after every feeder solve",
    (Field("vmin_pu", "pu", "lowest node voltage"), Field("vmin_node", "", "its node"),
     Field("vmax_pu", "pu", "highest node voltage"), Field("vmax_node", "", "its node"),
     Field("nodes_outside_band", "", "nodes outside 0.95-1.05 pu"), Field("vuf_head", "pu", "V2/V1 at the head bus")),
)
FEEDER_NODE_VOLTAGES = Publication(
    "feeder/{feeder}/node_voltages", "vector", "pu", FEEDER_GROUP,
    "voltage magnitude of every feeder node, in `node_names` order (source bus excluded); only when "
    "`output.node_voltages` is true or a coordinator runs",
    "after every feeder solve",
    (Field("vm_pu", "pu", "node voltage magnitude", "node_names"),),
)
# The DER vector: the readings every DER kind declares (grid.ders.registry.READINGS): the feeder
# totals, then per-device groups as long as the feeder metadata's `devices` list of that dimension.
FEEDER_DERS = Publication(
    "feeder/{feeder}/ders", "vector", "", FEEDER_GROUP,
    "DER and device state of one copy after the solve, packed by `pack_ders` (see [DER vector](#der-vector))",
    "after every feeder solve",
    (*(Field(r.name, r.units, r.description) for r in READINGS if r.total),
     *(Field(r.name, r.units, r.description, r.device) for r in READINGS if r.device)),
)
FEEDER_METADATA = Publication(
    "feeder/{feeder}/metadata", "string", "", FEEDER_GROUP,
    "JSON with the fields in [Feeder metadata](#feeder-metadata)", "once, initializing mode",
)
FEEDER_GROUP_TIMING = Publication(
    "feeders_{group}/timing", "vector", "s", FEEDER_GROUP,
    "cumulative seconds the process spent in its feeders' whole steps: DER dispatch, load writes, OpenDSS solve and "
    "the readings of power, voltages and DERs (not the HELICS calls)",
    "after every solve of the group's feeders",
    (Field("opendss_s", "s", "cumulative feeder work time"),),
)

# -- coordinator -----------------------------------------------------------------------------
SETPOINTS = Publication(
    "coordinator/{feeder}/setpoints", "string", "", COORDINATOR,
    "DER set-points of the feeder: JSON of `grid.setpoints.Setpoints` (format in "
    "[Set-points from a coordinator](#set-points-from-a-coordinator)); batteries as `[p_kw, q_kvar]`",
    "after each successful plan",
)
GENERATOR_DISPATCH = Publication(
    "coordinator/transmission/dispatch", "vector", "MW", COORDINATOR,
    "set-point of every row of the network's `gen` table (NaN: not dispatched)", "after each successful plan",
    (Field("p_mw", "MW", "generator set-point", "gen"),),
)
COORDINATOR_METADATA = Publication(
    "coordinator/metadata", "string", "", COORDINATOR,
    "JSON `{scheme, terms, slacks, layout, build_s, n_variables, n_constraints, interval_steps, periods}`",
    "once, initializing mode",
)
COORDINATOR_RECORD = Publication(
    "coordinator/record", "vector", "", COORDINATOR,
    "one solve: the entries named by the metadata's `layout` (status, objective, each cost term, "
    "solve/HiGHS/update/plan seconds, sizes, each slack, predicted-vs-realised voltage error, planned feeder power, exchange counts)",
    "after each plan",
    (Field("value", "", "entries named by the metadata's layout", "layout"),),
)

# -- every federate but the recorder ---------------------------------------------------------
CHECKPOINT = Publication(
    "{federate}/checkpoint", "string", "", f"{TRANSMISSION}, {FEEDER_GROUP}, {COORDINATOR}",
    'JSON `{"step": k, "state": {...}}`: the federate\'s state after step k (feeder groups: a state per feeder name), '
    "written by the recorder into the results file's `checkpoint` group (`docs/results.md`)",
    "with `output.checkpoint_every`, after each checkpoint step k: transmission after its final solve, feeders after "
    "every solve of the step (the last one counts), coordinator after its plan",
)

PUBLICATIONS: tuple[Publication, ...] = (
    BOUNDARY_VOLTAGE, BOUNDARY_LOAD, TRANSMISSION_BUS_VM, TRANSMISSION_BUS_VA, TRANSMISSION_BRANCH_LOADING, COUPLING,
    TRANSMISSION_TIMING, MULTIPLIERS, TRANSMISSION_METADATA, GENERATION_COST,
    FEEDER_POWER, FEEDER_VOLTAGES, FEEDER_NODE_VOLTAGES, FEEDER_DERS, FEEDER_METADATA, FEEDER_GROUP_TIMING,
    SETPOINTS, GENERATOR_DISPATCH, COORDINATOR_METADATA, COORDINATOR_RECORD, CHECKPOINT,
)


def publication(key: str) -> Publication:
    """The entry of a key pattern (as the results catalogue names its sources)."""
    for pub in PUBLICATIONS:
        if pub.key == key:
            return pub
    raise KeyError(f"no publication {key!r} in federates.interfaces")


# -- the DER vector: present packing contract ------------------------------------------------
DER_TOTALS = tuple(f.name for f in FEEDER_DERS.fields if f.per is None)
DER_DEVICES = tuple(f.name for f in FEEDER_DERS.fields if f.per is not None)


def der_counts(devices: Mapping[str, Sequence]) -> dict[str, int]:
    """Length of each DER_DEVICES group from the names along each device dimension (the feeder
    metadata's `devices`, `DerFleet.devices()`)."""
    return {f.name: len(devices.get(f.per, ())) for f in FEEDER_DERS.fields if f.per is not None}


def pack_ders(readings: dict) -> list[float]:
    values = [float(readings[key].sum()) for key in DER_TOTALS]
    for key in DER_DEVICES:  # numpy arrays of floats; one conversion each (value by value costs a feeder step 5 %)
        values += readings[key].tolist()
    return values


def unpack_ders(vector, counts: dict[str, int]) -> dict:
    """Inverse of pack_ders; `counts` gives the length of each DER_DEVICES entry."""
    out = dict(zip(DER_TOTALS, vector[: len(DER_TOTALS)]))
    at = len(DER_TOTALS)
    for key in DER_DEVICES:
        out[key] = vector[at : at + counts[key]]
        at += counts[key]
    return out


# -- docs/interfaces.md ----------------------------------------------------------------------
# How the docs write the parts of key patterns.
_DOC_PARTS = {"{feeder}": "<name>", "{group}": "<g>", "{bus}": "<bus>", "{federate}": "<federate>"}


def _doc_key(pattern: str) -> str:
    for part, doc in _DOC_PARTS.items():
        pattern = pattern.replace(part, doc)
    return pattern


def markdown_publications() -> str:
    """The publication table of docs/interfaces.md."""

    def elements(pub: Publication) -> str:
        if not pub.fields:
            return pub.description
        names_ = ", ".join(f.name if f.per is None else f"{f.name} per {f.per}..." for f in pub.fields)
        return f"`[{names_}]`: {pub.description}"

    lines = ["| key | publisher | HELICS type | units string | elements | when published |", "|---|---|---|---|---|---|"]
    for pub in PUBLICATIONS:
        producer = ", ".join(f"`{_doc_key(p)}`" if "{" in p else p for p in pub.producer.split(", "))
        lines.append(f"| `{_doc_key(pub.key)}` | {producer} | `{pub.type}` | {f'`{pub.units}`' if pub.units else '(none)'} | {elements(pub)} | {pub.when} |")
    return "\n".join(lines)


def markdown_der_vector() -> str:
    """The field table of the DER vector in docs/interfaces.md."""
    ders = FEEDER_DERS
    fixed = [f for f in ders.fields if f.per is None]
    groups = [f for f in ders.fields if f.per is not None]
    per = Counter(f.per for f in groups)  # in field order
    length = " + ".join([str(len(fixed)), *(f"{n}·n_{name}" if n > 1 else f"n_{name}" for name, n in per.items())])
    lines = [f"Length: `{length}` ({len(fixed)} totals, then one value per listed device).", "",
             "| position | name | units | meaning |", "|---|---|---|---|"]
    at: int | None = 0
    for f in ders.fields:
        position = "…" if at is None else (str(at) if f.per is None else f"{at} …")
        lines.append(f"| {position} | `{f.name}` | {f.units} | {f.description} |")
        at = None if at is None or f.per is not None else at + 1
    return "\n".join(lines)
