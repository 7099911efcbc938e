"""HELICS publication names: the federation's public interface.

One value per quantity group and step keeps the message count, which dominates the
per-step cost of the federation, low. All publications are global, so an observer federate (e.g. `helics_recorder`) can
subscribe to them by these names. Vectors are HELICS `vector` (list of doubles);
metadata are JSON strings published once in initializing mode. See
docs/interfaces.md for the full table.

Time: step k of a run is at HELICS time (k + 1) * step_seconds. Transmission and
feeders are uninterruptible and exchange values at exactly those times; the
recorder reads each step half a step later, after all iterations have settled.
"""

TRANSMISSION = "transmission"
RECORDER = "recorder"


def feeder_group(index: int) -> str:
    return f"feeders_{index}"


# Transmission -> feeders
def boundary_voltage(bus: int) -> str:
    """Complex voltage (pu, rectangular: vm * exp(j va)) at a boundary bus, HELICS type complex."""
    return f"transmission/boundary/{bus}/voltage"


# Transmission -> recorder / observers
BOUNDARY_LOAD = "transmission/boundary/load"  # [p_mw per boundary bus..., q_mvar per boundary bus...]
TRANSMISSION_BUS_VM = "transmission/bus/vm_pu"  # vector over all buses
TRANSMISSION_BUS_VA = "transmission/bus/va_deg"  # vector over all buses
TRANSMISSION_BRANCH_LOADING = "transmission/branch/loading_percent"  # lines then trafos
COUPLING = "transmission/coupling"  # [iterations, mismatch_pu, converged (1/0)]
TRANSMISSION_TIMING = "transmission/timing"  # cumulative [power_flow_s, waiting_for_helics_s]
MULTIPLIERS = "transmission/multipliers"  # copies behind each feeder, scenario order
TRANSMISSION_METADATA = "transmission/metadata"  # JSON {bus_names, branch_names, boundary_buses}


# Feeders -> transmission / recorder / observers
def feeder_power(feeder: str) -> str:
    """[p_a, p_b, p_c, p_total, q_a, q_b, q_c, q_total, losses_kw, losses_kvar]: substation
    power and the feeder's own losses, kW and kvar, one copy.

    One vector, not one per quantity: every publication is a message through the broker,
    and messages are most of the co-simulation's per-step overhead."""
    return f"feeder/{feeder}/power"


def feeder_voltages(feeder: str) -> str:
    """[vmin_pu, vmin_node, vmax_pu, vmax_node, nodes_outside_band, vuf_head]; nodes index the
    feeder's node names; the band is 0.95-1.05 pu; vuf_head is V2/V1 at the feeder's head bus."""
    return f"feeder/{feeder}/voltages"


def feeder_node_voltages(feeder: str) -> str:
    """Voltage magnitude (pu) of every feeder node, in the metadata's node_names order
    (published only when the scenario records node voltages)."""
    return f"feeder/{feeder}/node_voltages"


def feeder_ders(feeder: str) -> str:
    """DER and device state after the step's solve, packed by `pack_ders` (see DER_TOTALS)."""
    return f"feeder/{feeder}/ders"


# Totals over a feeder's DERs, in this order, then per battery its SOC and dispatched kW, then
# each regulator's tap and each capacitor's energised steps (counts in the feeder metadata).
DER_TOTALS = ("pv_available_kw", "pv_kw", "pv_kvar", "battery_kw", "battery_kvar", "ev_kw", "ev_owed_kwh")
DER_DEVICES = ("battery_soc", "battery_dispatch_kw", "regulator_taps", "capacitor_steps")


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


def feeder_group_timing(group: int) -> str:
    """Cumulative seconds the group's process spent in OpenDSS solves."""
    return f"{feeder_group(group)}/timing"


# Coordinator -> feeders
def setpoints(feeder: str) -> str:
    """JSON string {"pv": {name: [p_cap_pu, q_kvar]}, "battery": {name: p_kw, [p_kw, q_kvar] or null},
    "ev": {name: p_kw}}: DER set-points, kept by the feeder until the next ones arrive. DER names
    are in the feeder's metadata; null returns a battery to its own schedule."""
    return f"coordinator/{feeder}/setpoints"


COORDINATOR = "coordinator"
# Coordinator -> transmission: MW of each row of the network's gen table (NaN: not dispatched).
GENERATOR_DISPATCH = "coordinator/transmission/dispatch"
# Coordinator -> recorder: one vector per solve, laid out by `coordinator_record_layout`.
COORDINATOR_RECORD = "coordinator/record"
COORDINATOR_METADATA = "coordinator/metadata"  # JSON {scheme, terms, slacks, layout, build_s, sizes}
# Transmission -> recorder: [generation cost rate (currency/h) at the step's operating point]
GENERATION_COST = "transmission/generation_cost"


def feeder_metadata(feeder: str) -> str:
    """JSON: node_names, master, head_bus, and the names and ratings of the feeder's DERs and
    controlled devices (batteries, battery_kwh, battery_kw, pv, pv_pmpp_kw, evs, regulators, capacitors)."""
    return f"feeder/{feeder}/metadata"


# Checkpoints (`output.checkpoint_every`): each part of the federation publishes, after a
# checkpoint step k is final, a JSON string {"step": k, "state": {...}} (feeder groups:
# "state" maps feeder names to states); the recorder writes them into the results file.

def checkpoint_state(federate: str) -> str:
    """State of a federate (transmission, feeders_<g>, coordinator) after a checkpoint step."""
    return f"{federate}/checkpoint"
