"""How long `tandem report` takes on a week at 1-minute steps with 20 feeders, and how long
the page takes to open in headless Chromium.

    python benchmarks/report_speed.py [--keep DIR] [--days 7] [--feeders 20] [--results RUN.h5]
                                      [--libraries [--uplot DIR]]

No co-simulation runs: the results file is written with `results.store.ResultsWriter`
in the layout the recorder federate declares (its own `_declare_datasets`, fed with
made-up metadata instead of HELICS inputs, so dataset names, shapes, dtypes and chunking
are the recorder's), on IEEE 118 with 20 feeders in two feeder processes, batteries, PV,
regulators and capacitors. Values are random walks around realistic levels (transmission
voltages around an IEEE 118 power flow, so the derived losses are plausible).

It prints the time of `write_report` against the 30 s target, and against a baseline
measured in the same run: reading every dataset of the file once with h5py; then the best of
three headless Chromium runs that open the page and take a screenshot, against an empty page.
`--libraries` also times the same week drawn by each candidate plotting library installed
(bokeh, plotly; uPlot from its npm package unpacked in `--uplot`): six panels of four series
of 10,080 points, one self-contained page each.

Measured on the project's 2-core machine, 2026-12-07, shared with other work (load average
given; wall times grow with it, so compare figures of one row only):

| page (one week at 1 min) | HTML | Chromium, over an empty page (load 5-8) | (load ~10) |
|---|---|---|---|
| uPlot 1.6.32, 6 x 4 series | 3.13 MiB | 1.88 s | 4.29 s |
| bokeh 3.9.0, 6 x 4 series | 3.76 MiB | 1.70 s | 6.53 s |
| plotly 7.1.0 (SVG), 6 x 4 series | 7.78 MiB | 7.15 s | 18.38 s |
| plotly 7.1.0 (WebGL), 6 x 4 series | 7.78 MiB | 18.07 s | - |
| `tandem report`, PNG plots (before) | 2.0 MiB | - | - |
| `tandem report`, bokeh panels, synthetic week | 10.7 MiB | - | 24.0 s |

A third run at load ~12 gave an empty page 5.9 s and the synthetic week's report 80 s: on a
machine this busy the page timings are noise; measure again on a quiet one.

bokeh is used: as fast to open as uPlot within the spread of these runs, 0.6 MiB more per
page (its JavaScript), and a maintained Python API instead of a vendored JavaScript file and
hand-written glue; plotly is two to four times slower to open and twice the size. The
report's `write_report` took 11.7 s of CPU (54 s wall at load ~10; before, with PNG plots,
10.4 s wall at load ~3).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from results.store import ResultsWriter  # noqa: E402

TARGET_S = 30.0
NETWORK = "case118"


def _walk(rng, n: int, shape: tuple[int, ...], scale: float) -> np.ndarray:
    """A random walk per column, mean-reverting so it stays near 0."""
    from scipy.signal import lfilter

    steps = rng.normal(0.0, scale, size=(n, *shape))
    return lfilter([1.0], [1.0, -0.995], steps, axis=0)  # x[k] = 0.995 x[k-1] + step[k]


def _daily(hours: np.ndarray, peak_hour: float, width: float) -> np.ndarray:
    return np.exp(-0.5 * ((np.mod(hours - peak_hour + 12, 24) - 12) / width) ** 2)


def _layout(writer: ResultsWriter, n_feeders: int, n_processes: int, bus_names, branch_names, boundary, rng):
    """Declare the datasets exactly as the recorder federate does, from made-up metadata."""
    from federates import recorder

    feeders = []
    for i in range(n_feeders):
        big = i % 2 == 1
        feeders.append(SimpleNamespace(
            label=f"{'ieee123' if big else 'ieee13'}_{i:02d}", model="ieee123" if big else "ieee13",
            bus=int(boundary[i % len(boundary)]),
            meta={
                "node_names": [f"n{b}.{p}" for b in range(90 if big else 13) for p in (1, 2, 3)],
                "batteries": [f"bat_{j}" for j in range(10)], "battery_kwh": [200.0] * 10, "battery_kw": [100.0] * 10,
                "pv": [f"pv_{j}" for j in range(30)], "pv_pmpp_kw": [50.0] * 30,
                "regulators": [f"reg{j}" for j in range(7 if big else 3)],
                "capacitors": [f"cap{j}" for j in range(4 if big else 2)],
            },
        ))
    fake = recorder.RecorderFederate.__new__(recorder.RecorderFederate)
    fake.writer = writer
    fake.coordinated = False  # no coordinator datasets
    fake.labels = [f.label for f in feeders]
    fake.scenario = SimpleNamespace(feeders=[SimpleNamespace(model=f.model, bus=f.bus) for f in feeders])
    groups = [list(range(g, n_feeders, n_processes)) for g in range(n_processes)]
    fake.config = SimpleNamespace(boundary_buses=sorted(set(int(b) for b in boundary)), feeder_groups=groups)
    # A HELICS input stands for its own value: the fake helics returns what it is given.
    fake.sub_meta = json.dumps({"bus_names": bus_names, "branch_names": branch_names})
    fake.sub_multipliers = list(rng.integers(5, 40, n_feeders).astype(float))
    fake.sub_feeder_meta = [json.dumps(f.meta) for f in feeders]
    fake.sub_nodes = [f.label for f in feeders]  # node voltages recorded, as by default
    helics = SimpleNamespace(helicsInputGetString=lambda v: v, helicsInputGetVector=lambda v: v)
    with mock.patch.object(recorder, "h", helics):
        fake._declare_datasets()
    return feeders, fake


def _series(name: str, shape: tuple[int, ...], dtype, n: int, hours: np.ndarray, base, rng, feeders) -> np.ndarray:
    """Realistic values for one recorder dataset [time, *shape]."""
    day = _daily(hours, 19.0, 4.0)[:, None] * 0.6 + 0.5  # evening peak
    sun = np.clip(np.cos((np.mod(hours, 24) - 13.0) / 12.0 * np.pi * 1.6), 0, None)[:, None]
    leaf = name.rsplit("/", 1)[-1]
    cols = int(np.prod(shape)) if shape else 1

    def walk(scale: float) -> np.ndarray:
        return _walk(rng, n, (cols,), scale)

    if name == "transmission/vm_pu":
        v = base["vm"][None, :] + walk(0.0008)
    elif name == "transmission/va_deg":
        v = base["va"][None, :] * (0.8 + 0.4 * day) + walk(0.02)
    elif name == "boundary/vm_pu":
        v = base["vm"][base["boundary_pos"]][None, :] + walk(0.0008)
    elif name == "boundary/va_deg":
        v = base["va"][base["boundary_pos"]][None, :] * (0.8 + 0.4 * day)
    elif name in ("boundary/p_mw", "boundary/q_mvar"):
        v = (40.0 if leaf == "p_mw" else 12.0) * day * (1 + 0.1 * walk(0.02))
    elif leaf in ("p_kw", "p_total_kw", "q_kvar", "q_total_kvar"):
        scale = (1500.0 if "p_" in leaf else 450.0) / (3 if leaf in ("p_kw", "q_kvar") else 1)
        v = scale * day * (1 + 0.2 * walk(0.01)) - (800.0 * sun if "p_" in leaf else 0.0) / (3 if leaf == "p_kw" else 1)
    elif "/node_vm_pu/" in name:
        profile = np.linspace(1.02, 0.96, cols)[None, :]  # voltage falls along the feeder
        v = profile - 0.03 * day * np.linspace(0, 1, cols)[None, :] + walk(0.0005)
    elif leaf in ("losses_kw", "losses_kvar"):
        v = (30.0 if leaf == "losses_kw" else 60.0) * day ** 2 * (1 + 0.1 * np.abs(walk(0.01)))
    elif leaf == "vmin_pu":
        v = 0.985 - 0.04 * day + walk(0.001)
    elif leaf == "vmax_pu":
        v = 1.02 + 0.03 * sun + walk(0.001)
    elif leaf in ("vmin_node", "vmax_node"):
        nodes = np.array([len(f.meta["node_names"]) for f in feeders])
        v = rng.integers(0, nodes, size=(n, cols))
    elif leaf == "nodes_outside_band":
        v = np.clip(np.round(walk(0.3)) - 2, 0, None)
    elif leaf == "vuf_head":
        v = 0.01 + np.abs(walk(0.0002))
    elif leaf == "pv_available_kw":
        v = 1500.0 * sun * np.clip(1 - np.abs(walk(0.02)), 0.2, 1)
    elif leaf == "pv_kw":
        v = None  # from pv_available_kw, below
    elif leaf == "pv_kvar":
        v = -50.0 * sun + walk(1.0)
    elif leaf in ("battery_kw", "battery_dispatch_kw"):
        hour = np.mod(hours, 24)[:, None]
        v = np.where((hour >= 10) & (hour < 15), -80.0, np.where((hour >= 17) & (hour < 21), 90.0, 0.0)) * np.ones((1, cols))
        v = v * (10 if leaf == "battery_kw" else 1)
    elif leaf == "battery_kvar":
        v = walk(0.5)
    elif leaf == "battery_soc":
        v = np.clip(0.5 + walk(0.004), 0.1, 0.95)
    elif leaf == "ev_kw":
        v = 200.0 * _daily(hours, 21.0, 2.0)[:, None] * np.ones((1, cols))
    elif leaf == "ev_owed_kwh":
        v = 300.0 * _daily(hours, 22.0, 3.0)[:, None] * np.ones((1, cols))
    elif name == "transmission/loading_percent":
        v = np.clip(rng.uniform(10, 80, cols)[None, :] * day * 1.2 + walk(0.3), 0, None)
    elif name == "coupling/iterations":
        v = rng.integers(2, 6, n)
    elif name == "coupling/mismatch_pu":
        v = 10 ** rng.uniform(-9, -6, n)
    elif name == "coupling/converged":
        v = np.ones(n)
    elif name.startswith("timing/"):
        v = np.abs(rng.normal(0.01, 0.003, (n, cols)))
    elif leaf == "regulator_taps":
        v = np.clip(np.round(walk(0.05)), -16, 16)
    elif leaf == "capacitor_steps":
        v = (walk(0.05) > 0).astype(float)
    else:
        v = walk(0.01)
    return None if v is None else np.asarray(v).reshape(n, *shape).astype(dtype)


def build(path: Path, days: int = 7, n_feeders: int = 20, n_processes: int = 2, seed: int = 1) -> Path:
    """Write the synthetic results file; returns its path."""
    import warnings

    import pandapower as pp

    from grid.networks import load_network

    rng = np.random.default_rng(seed)
    net = load_network(NETWORK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pp.runpp(net, numba=False)
    bus_names = [str(b) for b in net.bus.index]
    branch_names = [f"line:{i}" for i in net.line.index] + [f"trafo:{i}" for i in net.trafo.index]
    boundary = sorted(rng.choice(net.load.bus.unique(), 10, replace=False).tolist())
    base = {"vm": net.res_bus.vm_pu.to_numpy(), "va": net.res_bus.va_degree.to_numpy(),
            "boundary_pos": np.array([bus_names.index(str(b)) for b in boundary])}

    n = days * 24 * 60
    scenario = {
        "name": "synthetic_week", "description": f"synthetic {days} d at 1 min, {NETWORK} + {n_feeders} feeders",
        "transmission": {"network": NETWORK},
        "feeders": [],
        "time": {"start": "2024-07-01T00:00:00", "duration": f"P{days}DT0H0M0S", "step": "P0DT0H1M0S"},
        "coupling": {"mode": "iterative", "tolerance_pu": 1e-6, "max_iterations": 20},
    }
    writer = ResultsWriter(path, "{}", "# synthetic", n, flush_seconds=1e9)
    feeders, fake = _layout(writer, n_feeders, n_processes, bus_names, branch_names, boundary, rng)
    scenario["feeders"] = [{"name": f.label, "model": f.model, "bus": f.bus, "multiplier": m}
                           for f, m in zip(feeders, fake.sub_multipliers)]
    writer.file.attrs["scenario"] = json.dumps(scenario)

    hours = np.arange(n) / 60.0
    data = {}
    for name, ds in writer._series.items():
        data[name] = _series(name, ds.shape[1:], ds.dtype, n, hours, base, rng, feeders)
    available = data["feeders/pv_available_kw"]  # delivered: up to 30 % curtailed
    data["feeders/pv_kw"] = available * (1 - np.clip(_walk(rng, n, available.shape[1:], 0.01), 0, 0.3))
    rows = list(data.items())
    for k in range(n):
        writer.append(k * 60.0, {name: values[k] for name, values in rows})
    writer.finish(complete=True)
    return path


def read_everything(path: Path) -> float:
    """Baseline: seconds to read every dataset of the file once with h5py."""
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        for name in _datasets(f):
            f[name][()]
    return time.perf_counter() - start


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def load_seconds(page: Path, repeats: int = 3) -> float:
    """Best wall time of a headless Chromium that opens the page, runs its scripts and takes a
    screenshot (fresh profile each time)."""
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    best = math.inf
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as profile:
            start = time.perf_counter()
            subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={profile}/shot.png",
                            "--window-size=1400,1400", page.resolve().as_uri()], capture_output=True, timeout=600)
            best = min(best, time.perf_counter() - start)
    return best


def library_pages(folder: Path, plots: int = 6, series: int = 4, uplot: Path | None = None) -> dict[str, Path]:
    """The same week at 1 min (`plots` panels of `series` random walks, 10,080 points each) drawn
    by each candidate library installed here: one self-contained page each."""
    import base64

    import pandas as pd

    n = 7 * 24 * 60
    rng = np.random.default_rng(0)
    times = pd.date_range("2024-07-01", periods=n, freq="1min")
    ms = times.values.astype("datetime64[ms]").astype(np.int64).astype(float)
    data = [[1.0 + np.cumsum(rng.normal(0, 0.01, n)) for _ in range(series)] for _ in range(plots)]
    pages: dict[str, str] = {}
    try:
        from bokeh.embed import file_html
        from bokeh.layouts import column
        from bokeh.models import ColumnDataSource
        from bokeh.plotting import figure
        from bokeh.resources import INLINE

        figs = []
        for i, ys in enumerate(data):
            source = ColumnDataSource({"t": ms, **{f"s{j}": y for j, y in enumerate(ys)}})
            fig = figure(x_axis_type="datetime", width=1100, height=300, title=f"plot {i}", tools="xpan,xbox_zoom,reset")
            for j in range(series):
                fig.line("t", f"s{j}", source=source, legend_label=f"s{j}")
            figs.append(fig)
        pages["bokeh"] = file_html(column(*figs), INLINE, "bokeh")
    except ImportError:
        pass
    try:
        import plotly.graph_objects as go

        parts = []
        for i, ys in enumerate(data):
            fig = go.Figure([go.Scatter(x0=times[0], dx=60_000, y=y, mode="lines", name=f"s{j}") for j, y in enumerate(ys)])
            fig.update_layout(height=300, xaxis_type="date", title=f"plot {i}")
            parts.append(fig.to_html(include_plotlyjs=i == 0, full_html=False))
        pages["plotly"] = "<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>" + "".join(parts) + "</body></html>"
    except ImportError:
        pass
    if uplot:  # the npm package unpacked: its dist/uPlot.iife.min.js and dist/uPlot.min.css
        b64 = lambda a: base64.b64encode(np.ascontiguousarray(a, "<f8").tobytes()).decode()  # noqa: E731
        plots_json = json.dumps([{"x": b64(ms / 1000), "ys": [b64(y) for y in ys]} for ys in data])
        glue = ("const f64 = s => { const b = atob(s), u = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) "
                "u[i] = b.charCodeAt(i); return new Float64Array(u.buffer); };"
                "for (const p of JSON.parse(document.getElementById('plots').textContent)) {"
                " const div = document.body.appendChild(document.createElement('div'));"
                " new uPlot({width: 1100, height: 300, series: [{}, ...p.ys.map((_, j) => ({label: 's' + j, stroke: 'blue'}))]},"
                " [f64(p.x), ...p.ys.map(f64)], div); }")
        pages["uplot"] = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{(uplot / 'dist/uPlot.min.css').read_text()}"
                          f"</style><script>{(uplot / 'dist/uPlot.iife.min.js').read_text()}</script></head><body>"
                          f"<script type='application/json' id='plots'>{plots_json}</script><script>{glue}</script></body></html>")
    paths = {}
    for name, page in pages.items():
        paths[name] = folder / f"library_{name}.html"
        paths[name].write_text(page, encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--feeders", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="write the results file and the report here and keep them")
    parser.add_argument("--results", metavar="H5", help="report this results file instead of writing a synthetic one")
    parser.add_argument("--libraries", action="store_true",
                        help="also time the candidate plotting libraries installed here (bokeh, plotly; uPlot with --uplot)")
    parser.add_argument("--uplot", metavar="DIR", type=Path, help="the uplot npm package, unpacked")
    args = parser.parse_args(argv)

    from tandem.report import write_report

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if args.results:
            path = Path(args.results)
        else:
            path = folder / f"synthetic_{args.days}d_{args.feeders}feeders.h5"
            start = time.perf_counter()
            build(path, days=args.days, n_feeders=args.feeders)
            print(f"synthetic results written in {time.perf_counter() - start:.1f} s")
        with h5py.File(path, "r") as f:
            n_datasets = sum(1 for _ in _datasets(f))
            steps = f["time/seconds"].shape[0]
        print(f"results: {path.name}, {steps} steps, {n_datasets} datasets, {path.stat().st_size / 2**20:.1f} MiB on disk")

        baseline = min(read_everything(path) for _ in range(2))
        start, cpu = time.perf_counter(), time.process_time()
        output = write_report([path], folder / (path.stem + ".html"))
        report, report_cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"baseline, read every dataset once (h5py): {baseline:6.2f} s")
        print(f"write_report:                             {report:6.2f} s  ({report_cpu:.2f} s CPU, "
              f"{report / baseline:.1f} x baseline, {output.stat().st_size / 2**20:.1f} MiB HTML)")
        verdict = "OK" if report < TARGET_S else "TOO SLOW"
        print(f"target:                                   {TARGET_S:6.2f} s  ({report / TARGET_S:.2f} of target: {verdict})")
        empty = folder / "empty.html"
        empty.write_text("<!DOCTYPE html><html><body>empty</body></html>")
        pages = {"report": output, **(library_pages(folder, uplot=args.uplot) if args.libraries else {})}
        base = load_seconds(empty)
        print(f"headless Chromium, empty page:            {base:6.2f} s")
        for name, page in pages.items():
            seconds = load_seconds(page)
            print(f"headless Chromium, {name:<22s} {seconds:6.2f} s  ({seconds - base:5.2f} s over the empty page, "
                  f"{page.stat().st_size / 2**20:.2f} MiB)")
    return 0 if report < TARGET_S else 1


def _datasets(f: h5py.File):
    found = []
    f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


if __name__ == "__main__":
    sys.exit(main())
