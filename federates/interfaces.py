"""HELICS publication names: the federation's public interface.

All publications are global, so an observer federate (e.g. `helics_recorder`) can
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
    """[vm_pu, va_deg] at a boundary bus."""
    return f"transmission/boundary/{bus}/voltage"


# Transmission -> recorder / observers
def boundary_load(bus: int) -> str:
    """[p_mw, q_mvar]: the transmission-side load that stands for the feeders at a bus."""
    return f"transmission/boundary/{bus}/load"


TRANSMISSION_BUS_VM = "transmission/bus/vm_pu"  # vector over all buses
TRANSMISSION_BUS_VA = "transmission/bus/va_deg"  # vector over all buses
TRANSMISSION_BRANCH_LOADING = "transmission/branch/loading_percent"  # lines then trafos
COUPLING = "transmission/coupling"  # [iterations, mismatch_pu, converged (1/0)]
MULTIPLIERS = "transmission/multipliers"  # copies behind each feeder, scenario order
TRANSMISSION_METADATA = "transmission/metadata"  # JSON {bus_names, branch_names, boundary_buses}


# Feeders -> transmission / recorder / observers
def feeder_p(feeder: str) -> str:
    """[p_a, p_b, p_c, p_total] substation active power in kW."""
    return f"feeder/{feeder}/p_kw"


def feeder_q(feeder: str) -> str:
    """[q_a, q_b, q_c, q_total] substation reactive power in kvar."""
    return f"feeder/{feeder}/q_kvar"


def feeder_voltage_extremes(feeder: str) -> str:
    """[vmin_pu, vmin_node, vmax_pu, vmax_node]; nodes index the feeder's node names."""
    return f"feeder/{feeder}/voltage_extremes"


def feeder_metadata(feeder: str) -> str:
    """JSON {node_names}."""
    return f"feeder/{feeder}/metadata"
