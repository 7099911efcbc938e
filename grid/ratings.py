"""Branch thermal ratings of a transmission network, by a published source (scenario key
`transmission.ratings`).

* `case`  the ratings the network comes with (pandapower's conversions of the MATPOWER cases
          turn a missing rate_a into 9900 MVA: in case118 every line gets 41 kA and every
          transformer 9900 MVA, so nothing ever congests);
* `pglib` the rate_a of PGLib-OPF (IEEE PES Power Grid Library, v23.07) for the same branches:
          published data, shipped in `grid/data/` with its source and licence (CC BY 4.0). Known
          for `case118` (`PGLIB_RATINGS`).

A rating becomes a line's `max_i_ka` = rate_a / (sqrt(3) x the from-bus kV) (so pandapower's
loading_percent and the coordinator's DC-OPF limit, max_i_ka x kV x sqrt(3), are against
rate_a), and a transformer's `sn_mva` = rate_a with `vk_percent`, `vkr_percent` and
`i0_percent` rescaled so its impedance in ohms, hence every power flow, is unchanged (tested).
"""

from __future__ import annotations

import math
from pathlib import Path

from scenario.schema import PGLIB_RATED

DATA = Path(__file__).resolve().parent / "data"
PGLIB_RATINGS = {name: DATA / f"pglib_{name}_rate_a.csv" for name in PGLIB_RATED}  # network -> its PGLib rate_a table
BASE_MVA = 100.0  # the MATPOWER tables' base
RATINGS = ("case", "pglib")


def apply_ratings(net, ratings: str, network: str) -> None:
    """Give `net` (pandapower, as `grid.networks.load_network(network)` returns it) the branch
    ratings `ratings` names; "case" leaves it as it is."""
    if ratings == "case":
        return
    if ratings != "pglib":
        raise ValueError(f"transmission.ratings: unknown {ratings!r} (one of {', '.join(RATINGS)})")
    if network not in PGLIB_RATINGS:
        raise ValueError(f"transmission.ratings: 'pglib' ratings are known for {', '.join(PGLIB_RATINGS)} only, not {network!r}")
    for element, index, rate in matched_branches(net, read_table(PGLIB_RATINGS[network])):
        if element == "line":
            kv = float(net.bus.at[int(net.line.at[index, "from_bus"]), "vn_kv"])
            parallel = float(net.line.at[index, "parallel"]) * float(net.line.at[index, "df"])
            net.line.at[index, "max_i_ka"] = rate / (math.sqrt(3) * kv * parallel)
        else:
            scale = rate / float(net.trafo.at[index, "sn_mva"])  # same ohms: vk x sn constant ...
            net.trafo.at[index, "sn_mva"] = rate
            for column in ("vk_percent", "vkr_percent"):
                net.trafo.at[index, column] = float(net.trafo.at[index, column]) * scale
            net.trafo.at[index, "i0_percent"] = float(net.trafo.at[index, "i0_percent"]) / scale  # ... i0 x sn too


def read_table(path: Path) -> list[dict[str, float]]:
    """Rows of a rating table (CSV after its '#' comment lines): from_bus, to_bus, r_pu, x_pu, rate_a_mva."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = lines[0].split(",")
    return [dict(zip(names, (float(v) for v in line.split(",")))) for line in lines[1:]]


def matched_branches(net, table: list[dict[str, float]]) -> list[tuple[str, int, float]]:
    """(element table, index, rate_a MVA) of every row of a rating table, matched to the net's
    lines and transformers by their buses (MATPOWER numbers: the net's bus names) and, among
    parallel branches, by reactance. Every branch of the net must be matched exactly once."""
    number = {int(name): int(index) for index, name in zip(net.bus.index, net.bus.name)}
    kv = net.bus.vn_kv
    lines = net.line[net.line.in_service.astype(bool)]
    x_line = (lines.x_ohm_per_km * lines.length_km / lines.parallel / (kv.loc[lines.from_bus].to_numpy() ** 2 / BASE_MVA)).to_numpy()
    candidates: dict[frozenset, list[tuple[str, int, float]]] = {}
    for (index, row), x in zip(lines.iterrows(), x_line):
        candidates.setdefault(frozenset((int(row.from_bus), int(row.to_bus))), []).append(("line", int(index), float(x)))
    for index, row in net.trafo[net.trafo.in_service.astype(bool)].iterrows():
        candidates.setdefault(frozenset((int(row.hv_bus), int(row.lv_bus))), []).append(("trafo", int(index), math.nan))
    out = []
    for row in table:
        ends = (int(row["from_bus"]), int(row["to_bus"]))
        if not all(end in number for end in ends):
            raise ValueError(f"rating table: branch {ends[0]}-{ends[1]} joins a bus the network does not have")
        found = candidates.get(frozenset(number[end] for end in ends), [])
        if not found:
            raise ValueError(f"rating table: no branch {ends[0]}-{ends[1]} (or one too many in the table) in the network")
        pick = min(range(len(found)), key=lambda i: abs(found[i][2] - row["x_pu"]) if not math.isnan(found[i][2]) else 0.0)
        element, index, _ = found.pop(pick)
        out.append((element, index, float(row["rate_a_mva"])))
    left = [f"{element}:{index}" for found in candidates.values() for element, index, _ in found]
    if left:
        raise ValueError(f"rating table: no rating for {len(left)} branches of the network ({', '.join(left[:3])}, ...)")
    return out
