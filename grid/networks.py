"""Loading transmission networks by case name or file.

The case names are listed in the scenario schema, statically, so that validating a
scenario does not import pandapower (the feeder and recorder processes never need it).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from scenario.schema import BUILTIN_CASES, SIMBENCH_PREFIX


def load_network(network: str):
    """Return a pandapower net for a network function pandapower ships, a SimBench code
    ('simbench:<code>') or a JSON/MATPOWER file."""
    import pandapower as pp
    import pandapower.networks as pn

    if network in BUILTIN_CASES:
        return getattr(pn, network)()
    if network.startswith(SIMBENCH_PREFIX):
        try:
            import simbench
        except ImportError:
            raise ValueError("SimBench grids need the simbench package (pip install simbench)") from None
        return simbench.get_simbench_net(network[len(SIMBENCH_PREFIX):])
    path = Path(network)
    if not path.is_file():
        raise FileNotFoundError(f"transmission network file not found: {path}")
    if path.suffix.lower() == ".json":
        return pp.from_json(str(path))
    from pandapower.converter.matpower import from_mpc

    return from_mpc(str(path), f_hz=60)


@dataclass(frozen=True)
class NetworkSummary:
    """What checking a scenario against its network needs: buses, their names, the loads."""

    bus_index: list[int]
    bus_name: list[str]
    load_bus: list[int]
    load_p_mw: list[float]

    @classmethod
    def of(cls, net) -> "NetworkSummary":
        loads = net.load[net.load.in_service]
        return cls([int(b) for b in net.bus.index], [str(x) for x in net.bus.name],
                   [int(b) for b in loads.bus], [float(p) for p in loads.p_mw])

    def load_at(self, bus: int) -> float:
        return sum(p for b, p in zip(self.load_bus, self.load_p_mw) if b == bus)


def _summary_cache(network: str) -> Path:
    """One small JSON per network: built-ins keyed by pandapower's version, files by path, size and time."""
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem" / "networks"
    if network in BUILTIN_CASES:
        key = f"{network}-pandapower{metadata.version('pandapower')}"
    elif network.startswith(SIMBENCH_PREFIX):
        try:
            version = metadata.version("simbench")
        except metadata.PackageNotFoundError:
            version = "missing"
        key = f"simbench-{network[len(SIMBENCH_PREFIX):]}-{version}-pandapower{metadata.version('pandapower')}"
    else:
        stat = Path(network).stat()
        identity = f"{Path(network).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        key = f"{Path(network).stem}-{hashlib.sha1(identity.encode()).hexdigest()[:16]}"
    return root / f"{key}.json"


def network_summary(network: str) -> NetworkSummary:
    """The network's summary, from the cache when it has one: validating a scenario then needs
    no pandapower import (over a second of every run's start)."""
    cache = _summary_cache(network)
    try:
        return NetworkSummary(**json.loads(cache.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    summary = NetworkSummary.of(load_network(network))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = cache.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(asdict(summary)))
        os.replace(staging, cache)  # atomic for concurrent runs
    except OSError:
        pass  # no writable cache: validate from the network every time
    return summary
