"""Loading transmission networks by case name or file.

The names are listed statically so that validating a scenario does not import
pandapower (the feeder and recorder processes never need it).
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_CASES = (
    "case4gs", "case5", "case6ww", "case9", "case11_iwamoto", "case14", "case24_ieee_rts",
    "case30", "case_ieee30", "case33bw", "case39", "case57", "case89pegase", "case118",
    "case145", "case_illinois200", "case300",
)
NETWORK_FILE_SUFFIXES = (".json", ".m", ".mat")


def load_network(network: str):
    """Return a pandapower net for a built-in case name or a JSON/MATPOWER file."""
    import pandapower as pp
    import pandapower.networks as pn

    if network in BUILTIN_CASES:
        return getattr(pn, network)()
    path = Path(network)
    if not path.is_file():
        raise FileNotFoundError(f"transmission network file not found: {path}")
    if path.suffix.lower() == ".json":
        return pp.from_json(str(path))
    from pandapower.converter.matpower import from_mpc

    return from_mpc(str(path), f_hz=60)
