"""The output catalogue: every dataset of a results file, declared once.

Each `Dataset` gives the path, dims (without the leading time axis of a series), units, dtype,
the description stored with it, the longer meaning docs/results.md shows, and where its values
come from: a HELICS publication (its key pattern, as federates/interfaces.py declares it) and
the named fields of it, or a metadata entry, or the scenario. `how` says what is done with the
source on the way into the file (see HOW). The recorder declares the file's datasets and fills
every row from this table; the dataset tables of docs/results.md are generated from it
(`python -m tandem.generated_docs`).

This layer knows nothing of the federates: sources are plain strings, which the recorder
resolves against the wire table at setup (and fails there on a name it does not know).
"""

from __future__ import annotations

from dataclasses import dataclass

# What the recorder does with a dataset's source (`Dataset.how`).
HOW = {
    "copy": "the named fields of the one publication",
    "feeders": "the named fields of each feeder's publication, stacked over the feeders (scenario order)",
    "feeder": "the named fields of feeder <name>'s publication",
    "at_boundary": "the named fields at the boundary buses' positions among all buses",
    "per_step": "difference of the cumulative counter from the step before",
    "groups": "the named field of each feeder process's publication, as per_step",
    "layout": "the entries of the coordinator's record its metadata's `layout` names (a name, or every `<prefix>/...`); NaN and status −1 in steps without a solve",
    "metadata": "a list of the publication's JSON metadata",
    "device_names": "the names along a device dimension in the feeder metadata's `devices`",
    "scenario": "the resolved scenario",
}

# Size of each dimension, as docs/results.md writes it.
DIM_SIZES = {
    "boundary": "n_boundary", "feeder": "n_feeders", "phase": "3", "bus": "n_bus", "branch": "n_branch",
    "node": "n_nodes", "feeder_process": "n_feeder_processes", "battery": "n_battery", "pv": "n_pv",
    "regulator": "n_regulator", "capacitor": "n_capacitor", "term": "n_term", "slack": "n_slack",
}
DTYPE_NAMES = {"f8": "float64", "f4": "float32", "i8": "int64", "i4": "int32", "i2": "int16", "i1": "int8", "u1": "uint8", "str": "str"}


@dataclass(frozen=True)
class Dataset:
    path: str  # "<name>" stands for a feeder's name: one dataset per feeder
    dims: tuple[str, ...]  # without time
    units: str
    dtype: str  # numpy code, or "str"
    description: str  # the dataset's `description` attribute
    source: str  # a publication's key pattern ("feeder/{feeder}/power"), or "scenario"
    fields: tuple[str, ...] = ()  # named fields of the source vector, metadata key, or record entry
    how: str = "copy"  # a key of HOW
    static: bool = False  # written once, not a time series
    only: str = ""  # exists only: "coordinated", "node_voltages", or when the feeder has devices along that dimension
    meaning: str = ""  # docs/results.md's text; the description when empty

    def __post_init__(self) -> None:
        if self.how not in HOW:
            raise ValueError(f"{self.path}: unknown how {self.how!r}")

    def for_feeder(self, name: str) -> str:
        return self.path.replace("<name>", name)


_TRANS_META, _FEEDER_META = "transmission/metadata", "feeder/{feeder}/metadata"
_POWER, _VOLTAGES, _DERS = "feeder/{feeder}/power", "feeder/{feeder}/voltages", "feeder/{feeder}/ders"
_VM, _VA, _LOAD = "transmission/bus/vm_pu", "transmission/bus/va_deg", "transmission/boundary/load"
_COUPLING, _RECORD, _COORD_META = "transmission/coupling", "coordinator/record", "coordinator/metadata"

STATIC: tuple[Dataset, ...] = (
    Dataset("boundary/bus", ("boundary",), "", "i8", "pandapower index of each boundary bus", "scenario", ("boundary_buses",),
            how="scenario", static=True),
    Dataset("feeders/name", ("feeder",), "", "str", "feeder names", "scenario", ("feeders[].name",), how="scenario", static=True),
    Dataset("feeders/model", ("feeder",), "", "str", "bundled model name or master file", "scenario", ("feeders[].model",),
            how="scenario", static=True,
            meaning="bundled model name, `synthetic:<buses>`, or absolute path of the master `.dss` file"),
    Dataset("feeders/bus", ("feeder",), "", "i8", "transmission bus of each feeder", "scenario", ("feeders[].bus",),
            how="scenario", static=True, meaning="pandapower index of the feeder's transmission bus"),
    Dataset("feeders/multiplier", ("feeder",), "", "f8",
            "identical copies behind the bus (transmission load = multiplier x feeder power)",
            "transmission/multipliers", ("multiplier",), static=True,
            meaning="copies behind the bus: transmission load = multiplier × feeder power (`match_bus_load` values as fixed at step 0)"),
    Dataset("feeders/nodes/<name>", ("node",), "", "str", "OpenDSS node names of feeder <name>", _FEEDER_META, ("node_names",),
            how="metadata", static=True,
            meaning="OpenDSS node names of feeder `<name>` (e.g. `650.1`), source bus excluded"),
    Dataset("devices/<name>/battery", ("battery",), "", "str", "battery names", _FEEDER_META, ("batteries",),
            how="metadata", static=True, only="batteries", meaning="battery names of feeder `<name>` (`bat_0`, `bat_1`, ...)"),
    Dataset("devices/<name>/battery_kwh", ("battery",), "kWh", "f8", "energy rating", _FEEDER_META, ("battery_kwh",),
            how="metadata", static=True, only="batteries", meaning="energy rating of each battery"),
    Dataset("devices/<name>/battery_kw_rated", ("battery",), "kW", "f8", "power rating", _FEEDER_META, ("battery_kw",),
            how="metadata", static=True, only="batteries", meaning="power rating of each battery"),
    Dataset("devices/<name>/pv", ("pv",), "", "str", "PV system names", _FEEDER_META, ("pv",),
            how="metadata", static=True, only="pv", meaning="PV system names (`pv_0`, `pv_1`, ...)"),
    Dataset("devices/<name>/pv_pmpp_kw", ("pv",), "kW", "f8", "PV rating at 1 kW/m2", _FEEDER_META, ("pv_pmpp_kw",),
            how="metadata", static=True, only="pv", meaning="Pmpp of each PV system (its power at 1000 W/m2)"),
    Dataset("devices/<name>/regulator", ("regulator",), "", "str", "regulator controls", _FEEDER_META, ("regulators",),
            how="metadata", static=True, only="regulators",
            meaning="regulator control names (`RegControl`; IEEE 13: `vr1a`, `vr1b`, `vr1c`)"),
    Dataset("devices/<name>/capacitor", ("capacitor",), "", "str", "capacitor banks", _FEEDER_META, ("capacitors",),
            how="metadata", static=True, only="capacitors", meaning="capacitor bank names (IEEE 13: `cap675`, `cap611`)"),
    Dataset("transmission/bus", ("bus",), "", "str", "pandapower bus indices", _TRANS_META, ("bus_names",),
            how="metadata", static=True, meaning='pandapower bus indices, as strings (`"0"`, `"1"`, ...)'),
    Dataset("transmission/branch", ("branch",), "", "str", "lines then transformers", _TRANS_META, ("branch_names",),
            how="metadata", static=True,
            meaning="`line:<index>` for every line, then `trafo:<index>` for every two-winding transformer"),
)

SERIES: tuple[Dataset, ...] = (
    Dataset("boundary/vm_pu", ("boundary",), "pu", "f8", "voltage magnitude at each boundary bus", _VM, ("vm_pu",),
            how="at_boundary", meaning="voltage magnitude at each boundary bus (final transmission solve of the step)"),
    Dataset("boundary/va_deg", ("boundary",), "deg", "f8", "voltage angle at each boundary bus", _VA, ("va_deg",), how="at_boundary"),
    Dataset("boundary/p_mw", ("boundary",), "MW", "f8", "transmission-side load standing for the feeders", _LOAD, ("p_mw",),
            meaning="active power of the `feeders@<bus>` load element: Σ multiplier × feeder P over the bus's feeders"),
    Dataset("boundary/q_mvar", ("boundary",), "Mvar", "f8", "transmission-side reactive load standing for the feeders", _LOAD,
            ("q_mvar",), meaning="reactive power of that load element"),
    Dataset("feeders/p_kw", ("feeder", "phase"), "kW", "f8", "substation active power of one feeder copy per phase", _POWER,
            ("p_a", "p_b", "p_c"), how="feeders", meaning="active power one copy draws from its source, phases a, b, c"),
    Dataset("feeders/q_kvar", ("feeder", "phase"), "kvar", "f8", "substation reactive power of one feeder copy per phase", _POWER,
            ("q_a", "q_b", "q_c"), how="feeders", meaning="reactive power, phases a, b, c"),
    Dataset("feeders/p_total_kw", ("feeder",), "kW", "f8", "substation active power of one feeder copy", _POWER, ("p_total",),
            how="feeders", meaning="sum over phases of `feeders/p_kw`"),
    Dataset("feeders/q_total_kvar", ("feeder",), "kvar", "f8", "substation reactive power of one feeder copy", _POWER, ("q_total",),
            how="feeders", meaning="sum over phases of `feeders/q_kvar`"),
    Dataset("feeders/losses_kw", ("feeder",), "kW", "f8", "active power losses of one feeder copy", _POWER, ("losses_kw",),
            how="feeders", meaning="active power losses of one feeder copy (OpenDSS circuit losses)"),
    Dataset("feeders/losses_kvar", ("feeder",), "kvar", "f8", "reactive power losses of one feeder copy", _POWER, ("losses_kvar",),
            how="feeders"),
    Dataset("feeders/node_vm_pu/<name>", ("node",), "pu", "f4", "voltage of every node of feeder <name>, as feeders/nodes/<name>",
            "feeder/{feeder}/node_voltages", ("vm_pu",), how="feeder", only="node_voltages",
            meaning="voltage of every node of feeder `<name>`, in `feeders/nodes/<name>` order; written when "
                    "`output.node_voltages` is true (the default)"),
    Dataset("feeders/vmin_pu", ("feeder",), "pu", "f8", "lowest node voltage in the feeder", _VOLTAGES, ("vmin_pu",), how="feeders"),
    Dataset("feeders/vmin_node", ("feeder",), "", "i4", "index into feeders/nodes/<name> of the lowest voltage", _VOLTAGES,
            ("vmin_node",), how="feeders", meaning="index into `feeders/nodes/<name>` of that node"),
    Dataset("feeders/vmax_pu", ("feeder",), "pu", "f8", "highest node voltage in the feeder", _VOLTAGES, ("vmax_pu",), how="feeders"),
    Dataset("feeders/vmax_node", ("feeder",), "", "i4", "index into feeders/nodes/<name> of the highest voltage", _VOLTAGES,
            ("vmax_node",), how="feeders", meaning="index into `feeders/nodes/<name>` of that node"),
    Dataset("feeders/nodes_outside_band", ("feeder",), "", "i4", "nodes outside 0.95-1.05 pu", _VOLTAGES, ("nodes_outside_band",),
            how="feeders",
            meaning="number of feeder nodes with a voltage below 0.95 pu or above 1.05 pu (source bus excluded)"),
    Dataset("feeders/vuf_head", ("feeder",), "pu", "f8", "voltage unbalance factor V2/V1 at the feeder's head bus", _VOLTAGES,
            ("vuf_head",), how="feeders",
            meaning="voltage unbalance factor \\|V2\\|/\\|V1\\| (negative- over positive-sequence voltage) at the feeder's "
                    "head bus (the metadata's `head_bus`: IEEE 13 `650`, IEEE 123 `150r`)"),
    Dataset("transmission/vm_pu", ("bus",), "pu", "f8", "transmission bus voltage magnitudes", _VM, ("vm_pu",),
            meaning="voltage magnitude of every transmission bus"),
    Dataset("transmission/va_deg", ("bus",), "deg", "f8", "transmission bus voltage angles", _VA, ("va_deg",),
            meaning="voltage angle of every transmission bus"),
    Dataset("transmission/loading_percent", ("branch",), "%", "f8", "branch loading (current over rating)",
            "transmission/branch/loading_percent", ("loading_percent",), meaning="branch loading (pandapower `loading_percent`)"),
    Dataset("transmission/generation_cost_per_h", (), "1/h", "f8",
            "generation cost rate of the step's operating point (network's polynomial costs, currency per hour)",
            "transmission/generation_cost", ("cost_rate",),
            meaning="generation cost rate at the step's operating point under the network's polynomial costs (`poly_cost`; "
                    "units without a row count zero), currency per hour"),
    Dataset("coupling/iterations", (), "", "i4", "transmission solves in the step (1 in loose coupling)", _COUPLING, ("iterations",)),
    Dataset("coupling/mismatch_pu", (), "pu", "f8",
            "largest boundary voltage change between the voltage the feeders used and the final one", _COUPLING, ("mismatch_pu",),
            meaning="largest distance between the complex boundary voltage the feeders used and the final one: the one-step "
                    "lag in loose coupling, the last iteration's change in iterative coupling"),
    Dataset("coupling/converged", (), "", "u1", "mismatch within the coupling tolerance", _COUPLING, ("converged",),
            meaning="1 if `mismatch_pu` ≤ `coupling.tolerance_pu`"),
    Dataset("timing/transmission_power_flow_s", (), "s", "f8", "wall time of the step's transmission power flows",
            "transmission/timing", ("power_flow_s",), how="per_step", meaning="wall time of the step's transmission solves"),
    Dataset("timing/transmission_wait_s", (), "s", "f8",
            "wall time the transmission federate waited on HELICS in the step (feeder solves and exchange)",
            "transmission/timing", ("wait_s",), how="per_step",
            meaning="wall time the transmission federate spent in HELICS time requests in the step (feeder solves and exchange)"),
    Dataset("timing/feeders_opendss_s", ("feeder_process",), "s", "f8",
            "wall time of the step's feeder work in each feeder process: DER and load updates, OpenDSS solves, readings",
            "feeders_{group}/timing", ("opendss_s",), how="groups",
            meaning="wall time of each feeder process's work on the step, over all its feeders and solves (iterations): DER "
                    "and load updates, OpenDSS solve, and reading power, voltages and DERs; HELICS calls excluded"),
)

COORDINATOR: tuple[Dataset, ...] = (
    Dataset("coordinator/term", ("term",), "", "str", "objective terms of the coordinator's OPF", _COORD_META, ("terms",),
            how="metadata", static=True, only="coordinated",
            meaning="objective terms (generation, curtailment, battery_degradation, load_shift, reactive, penalty_*)"),
    Dataset("coordinator/slack", ("slack",), "", "str", "soft limits of the OPF (unit in the name)", _COORD_META, ("slacks",),
            how="metadata", static=True, only="coordinated",
            meaning="soft limits, unit in the name (unserved_mwh, voltage_violation_pu2h, ...)"),
    Dataset("coordinator/status", (), "", "i1",
            "solve status after this step: 0 optimal, 1 time limit with a solution, 2 failed (set-points kept), -1 no solve",
            _RECORD, ("status",), how="layout", only="coordinated",
            meaning="0 optimal, 1 time limit with a solution, 2 failed (nothing sent: the last set-points stay), −1 no solve after this step"),
    Dataset("coordinator/objective", (), "", "f8", "objective of the solve over its horizon (currency)", _RECORD, ("objective",),
            how="layout", only="coordinated"),
    Dataset("coordinator/cost", ("term",), "", "f8",
            "each objective term over the solve's horizon (currency), as coordinator/term", _RECORD, ("cost/",),
            how="layout", only="coordinated"),
    Dataset("coordinator/solve_s", (), "s", "f8", "solver call: update push, HiGHS and status", _RECORD, ("solve_s",),
            how="layout", only="coordinated"),
    Dataset("coordinator/highs_s", (), "s", "f8", "time inside HiGHS", _RECORD, ("highs_s",), how="layout", only="coordinated"),
    Dataset("coordinator/update_s", (), "s", "f8", "writing the new forecasts and measurements into the model", _RECORD,
            ("update_s",), how="layout", only="coordinated"),
    Dataset("coordinator/plan_s", (), "s", "f8", "whole plan: forecasts, update, solve, reading set-points", _RECORD, ("plan_s",),
            how="layout", only="coordinated"),
    Dataset("coordinator/n_variables", (), "", "f8", "variables of the OPF", _RECORD, ("n_variables",), how="layout",
            only="coordinated"),
    Dataset("coordinator/n_constraints", (), "", "f8", "constraints of the OPF", _RECORD, ("n_constraints",), how="layout",
            only="coordinated"),
    Dataset("coordinator/slacks", ("slack",), "", "f8", "soft-limit use over the horizon, as coordinator/slack", _RECORD,
            ("slack/",), how="layout", only="coordinated"),
    Dataset("coordinator/voltage_error_max_pu", (), "pu", "f8",
            "largest |OPF-predicted - OpenDSS-realised (mean over the interval)| feeder node voltage of the previous plan's first interval",
            _RECORD, ("voltage_error_max_pu",), how="layout", only="coordinated",
            meaning="largest \\|predicted − realised\\| feeder node voltage over the previous plan's first interval: LinDist3Flow's "
                    "prediction against OpenDSS's voltages averaged over the interval's steps (NaN at the first solve)"),
    Dataset("coordinator/voltage_error_mean_pu", (), "pu", "f8", "mean of that error over modelled nodes and feeders", _RECORD,
            ("voltage_error_mean_pu",), how="layout", only="coordinated"),
    Dataset("coordinator/exchange_iterations", (), "", "f8",
            "coordination rounds between TSO and DSOs in the solve (ADMM iterations; 1 for one-shot schemes)", _RECORD,
            ("exchange_iterations",), how="layout", only="coordinated"),
    Dataset("coordinator/exchange_values", (), "", "f8", "numbers that crossed the TSO-DSO interface in the solve", _RECORD,
            ("exchange_values",), how="layout", only="coordinated"),
    Dataset("coordinator/exchange_messages", (), "", "f8", "messages between TSO and DSOs in the solve", _RECORD,
            ("exchange_messages",), how="layout", only="coordinated"),
    Dataset("coordinator/planned_feeder_kw", ("feeder",), "kW", "f8",
            "substation P of one feeder copy the plan schedules for its first interval", _RECORD, ("planned_kw/",),
            how="layout", only="coordinated",
            meaning="substation P of one copy of each feeder that the plan schedules for its first interval (the interface schedule)"),
)

CATALOGUE: tuple[Dataset, ...] = (*STATIC, *SERIES, *COORDINATOR)


def der_datasets(readings) -> tuple[Dataset, ...]:
    """The datasets of the DER kinds' readings (`grid.ders.registry.READINGS`, handed in by
    the recorder and the doc generator: this layer imports nothing above it): a feeder total
    `feeders/<reading>` per total, and per device `devices/<name>/<reading>` with the device
    names `devices/<name>/<device>` (where STATIC does not declare them already)."""
    out: list[Dataset] = []
    for r in readings:
        if r.total:
            out.append(Dataset(f"feeders/{r.name}", ("feeder",), r.units, r.dtype, r.description, _DERS, (r.name,),
                               how="feeders", meaning=r.meaning))
    declared = {d.path for d in STATIC}
    for dim in dict.fromkeys(r.device for r in readings if r.device):
        if f"devices/<name>/{dim}" not in declared:
            out.append(Dataset(f"devices/<name>/{dim}", (dim,), "", "str", f"{dim} names", _FEEDER_META, (dim,),
                               how="device_names", static=True, only=dim, meaning=f"names of feeder `<name>`'s {dim} units"))
    for r in readings:
        if r.device:
            out.append(Dataset(f"devices/<name>/{r.name}", (r.device,), r.units, r.dtype, r.description, _DERS, (r.name,),
                               how="feeder", only=r.device, meaning=r.meaning))
    return tuple(out)


def markdown_table(entries: tuple[Dataset, ...]) -> str:
    """One dataset table of docs/results.md."""
    lines = ["| path | shape | dtype | dims | units | meaning | from |", "|---|---|---|---|---|---|---|"]
    for d in entries:
        sizes = [DIM_SIZES.get(dim, f"n_{dim}") for dim in d.dims]
        sizes = sizes if d.static else ["n", *sizes]
        shape = f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"
        dims = ",".join(d.dims if d.static else ("time", *d.dims))
        source = f"`{d.source.replace('{feeder}', '<name>').replace('{group}', '<g>')}`" + "".join(f" `{f}`" for f in d.fields)
        if d.how not in ("copy", "scenario"):
            source += f" ({d.how})"
        lines.append(f"| `{d.path}` | {shape} | {DTYPE_NAMES[d.dtype]} | {dims} | {d.units} | {d.meaning or d.description} | {source} |")
    return "\n".join(lines)


def markdown_static(readings=()) -> str:
    """Static datasets, with the device names of the DER kinds' `readings` (see der_datasets)."""
    return markdown_table((*STATIC, *(d for d in der_datasets(readings) if d.static)))


def markdown_series(readings=()) -> str:
    """Time series, with the DER kinds' `readings` after the feeder totals of the power flow."""
    return markdown_table((*SERIES, *(d for d in der_datasets(readings) if not d.static)))


def markdown_coordinator() -> str:
    return markdown_table(COORDINATOR)


def markdown_how() -> str:
    """What the `from` column's words in parentheses mean."""
    return "\n".join(["| how | the row's values |", "|---|---|", *(f"| `{k}` | {v} |" for k, v in HOW.items())])
