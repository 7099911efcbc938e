"""The part of an OpenDSS circuit's state that carries from one solve to the next, saved and
put back so that a feeder rebuilt from its model continues exactly where it was.

OpenDSS's power flow iterates until the voltages change less than its tolerance, so a
result depends, within that tolerance, on where the iteration starts (the last solution's
node voltages) and on the system admittance matrix it iterates with. That matrix is part
of the history too: writing a load's kW or a PV system's irradiance through the API marks
the element's admittance stale but does not rebuild the matrix, so each load and PV
system stays in it with the admittance of the last rebuild (after a tap change, a
capacitor switching or a storage edit, whenever that was). Both are saved: the node
voltages as they are, and the first entry of each load's, PV system's and storage
element's primitive admittance matrix. On restore, each load's kW and each PV system's
irradiance is set so that its admittance comes out the same (it is proportional to them),
the matrix is rebuilt, and the voltages are written back into OpenDSS's voltage vector.
Regulator taps are saved as the winding tap itself, not the tap number: taps moved one
step at a time carry round-off of their own. Capacitors are saved as their step states.
"""

from __future__ import annotations

import numpy as np

# A PV system is probed at this share of its active-power cap (as irradiance, kW/m2): below
# the cap, its power, and so its admittance's conductance, is proportional to the irradiance.
_PROBE_SHARE = 0.5
# Neighbours of a scaled parameter tried, in units in the last place (see `restore`).
_ULP_OFFSETS = (1, -1, 2, -2, 3, -3, 4, -4)


def _first_admittances(dss, first, next_) -> np.ndarray:
    """Y[0, 0] of the primitive admittance matrix of every element of one class, in its order."""
    out = []
    index = first()
    while index > 0:
        y = dss.CktElement.YPrim()
        out.append(complex(y[0], y[1]) if len(y) else 0j)
        index = next_()
    return np.array(out, dtype=complex)


def _admittances(dss) -> dict[str, np.ndarray]:
    return {
        "load": _first_admittances(dss, dss.Loads.First, dss.Loads.Next),
        "pv": _first_admittances(dss, dss.PVsystems.First, dss.PVsystems.Next),
        "storage": _first_admittances(dss, dss.Storages.First, dss.Storages.Next),
    }


def _pair(values: np.ndarray) -> list[list[float]]:
    return [[float(v.real), float(v.imag)] for v in values]


def _unpair(values: list) -> np.ndarray:
    return np.array([complex(re, im) for re, im in values], dtype=complex)


def capture(dss, regulators: list[str], capacitors: list[str]) -> dict:
    """The circuit's carried-over state after a solve, as JSON-ready lists of floats."""
    taps = []
    for name in regulators:
        dss.RegControls.Name(name)
        transformer, winding = dss.RegControls.Transformer(), dss.RegControls.TapWinding()
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(winding)
        taps.append([transformer, winding, dss.Transformers.Tap()])
    states = []
    for name in capacitors:
        dss.Capacitors.Name(name)
        states.append([name, [int(s) for s in dss.Capacitors.States()]])
    return {
        "node_voltages": [float(v) for v in dss.YMatrix.getV()],  # re, im of each node, ground first
        "taps": taps,
        "capacitors": states,
        "admittances": {kind: _pair(values) for kind, values in _admittances(dss).items()},
    }


def _scale(target: np.ndarray, probe: np.ndarray, at_probe: np.ndarray) -> np.ndarray:
    """Parameter values giving the target admittances, from the admittances at probe values.
    The conductance is proportional to a load's kW and a PV system's irradiance (a PV
    system's susceptance comes from its kvar set-point, already in place); a load without
    conductance scales by its susceptance."""
    real = at_probe.real != 0
    ratio = np.zeros(len(target))
    ratio[real] = target.real[real] / at_probe.real[real]
    imag = ~real & (at_probe.imag != 0)
    ratio[imag] = target.imag[imag] / at_probe.imag[imag]
    return probe * ratio


def restore(dss, state: dict, pv_caps: list[float]) -> float:
    """Put a saved state into a freshly built circuit whose DER set-points (`pv_caps`, the
    PV systems' active-power caps in force) were already restored. Returns the largest
    relative difference between the rebuilt and the saved admittances (round-off when all
    went well)."""
    n_nodes = dss.Circuit.NumNodes()
    voltages = np.asarray(state["node_voltages"], dtype=float)
    if voltages.size != 2 * (n_nodes + 1):
        raise ValueError(f"checkpoint holds {voltages.size // 2 - 1} nodes, the circuit has {n_nodes}")
    for transformer, winding, tap in state["taps"]:
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(int(winding))
        dss.Transformers.Tap(float(tap))
    for name, states in state["capacitors"]:
        dss.Capacitors.Name(name)
        dss.Capacitors.States(states)
    target = {kind: _unpair(values) for kind, values in state["admittances"].items()}
    if len(target["load"]) != dss.Loads.Count() or len(target["pv"]) != dss.PVsystems.Count():
        raise ValueError("checkpoint does not match the feeder's loads and PV systems")

    # Probe: every admittance at known parameter values, then scale to the saved ones.
    load_probe = np.ones(len(target["load"]))
    pv_probe = _PROBE_SHARE * np.minimum(1.0, np.asarray(pv_caps, dtype=float))
    _set_parameters(dss, load_probe, pv_probe)
    at_probe = _rebuild(dss)
    kw = _scale(target["load"], load_probe, at_probe["load"])
    irradiance = _scale(target["pv"], pv_probe, at_probe["pv"])
    _set_parameters(dss, kw, irradiance)
    rebuilt = _rebuild(dss)
    # The scaled values are within a few units in the last place of the values the saved
    # admittances were made from: try their neighbours (+1, -1, +2, -2, ... units) until the
    # admittances come out as the same bits; an element never matched keeps its first value.
    first = {"load": kw, "pv": irradiance}
    found = {kind: rebuilt[kind] == target[kind] for kind in first}
    chosen = dict(first)
    for offset in _ULP_OFFSETS:
        if all(f.all() for f in found.values()):
            break
        trial = {kind: np.where(found[kind], chosen[kind], _ulps(first[kind], offset)) for kind in first}
        _set_parameters(dss, trial["load"], trial["pv"])
        rebuilt = _rebuild(dss)
        for kind in first:
            hit = ~found[kind] & (rebuilt[kind] == target[kind])
            chosen[kind] = np.where(hit, trial[kind], chosen[kind])
            found[kind] |= hit
    if not all(f.all() for f in found.values()):
        _set_parameters(dss, chosen["load"], chosen["pv"])
        rebuilt = _rebuild(dss)

    dss_ffi = dss._api_util.ffi  # OpenDSSDirect offers the voltage vector as a pointer, not a setter
    packed = np.ascontiguousarray(voltages).tobytes()
    dss_ffi.memmove(dss.YMatrix.VVector(), packed, len(packed))

    worst = 0.0
    for kind, values in target.items():
        if len(values):  # relative where the saved admittance is not zero, absolute where it is
            diff, size = np.abs(rebuilt[kind] - values), np.abs(values)
            worst = max(worst, float(np.max(np.where(size > 0, diff / np.where(size > 0, size, 1.0), diff))))
    return worst


def _ulps(values: np.ndarray, offset: int) -> np.ndarray:
    """Each value moved `offset` units in the last place."""
    out = values.copy()
    for _ in range(abs(offset)):
        out = np.nextafter(out, np.inf if offset > 0 else -np.inf)
    return out


def _set_parameters(dss, load_kw: np.ndarray, irradiance: np.ndarray) -> None:
    index, i = dss.Loads.First(), 0
    while index > 0:
        dss.Loads.kW(float(load_kw[i]))
        index, i = dss.Loads.Next(), i + 1
    index, i = dss.PVsystems.First(), 0
    while index > 0:
        dss.PVsystems.Irradiance(float(irradiance[i]))
        index, i = dss.PVsystems.Next(), i + 1


def _rebuild(dss) -> dict[str, np.ndarray]:
    """Rebuild the admittance matrix from the elements' present values (a solve without
    controls, which also leaves the solution initialised) and read the admittances."""
    dss.YMatrix.SystemYChanged(True)
    dss.Solution.SolveNoControl()
    return _admittances(dss)
