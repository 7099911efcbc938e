"""KPIs (tandem.kpis) and the HTML report (tandem.report): numbers on hand-made results
files with known answers and on a real small run; the page is self-contained and renders
in a real headless Chromium without console errors."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

import results.dataset
from results.store import ResultsWriter, Series
from tandem.kpis import kpi_table, kpis, transmission_losses_mw
from tandem.report import PLOTS, main_report, write_report
from tandem.summary import summarize
from tests.conftest import SMALL
from tests.conftest import tandem as run_tandem

STEP_H = 0.25  # the hand-made files are at 15-minute steps
KILLED = "federate 'feeders_0' was killed by SIGKILL after step 4"


def write_results(path: Path, series: dict, static: dict | None = None, *, complete: bool = True, error: str = "",
                  planned: int | None = None, scenario: dict | None = None) -> Path:
    """A results file through the recorder's writer: series {name: (values [time, ...], units, dims)},
    static {name: (values, dims)}."""
    n = len(next(iter(series.values()))[0]) if series else 0
    doc = {"name": "hand_made", "description": "written by the test",
           "time": {"start": "2024-03-01T00:00:00", "step": "P0DT0H15M0S"}, **(scenario or {})}
    writer = ResultsWriter(path, json.dumps(doc), "", n_steps=planned or n)
    for name, (values, dims) in (static or {}).items():
        writer.add_static(name, values if isinstance(values, list) else np.asarray(values), "", dims, name)
    arrays = {name: np.asarray(values) for name, (values, _, _) in series.items()}
    for name, (_, units, dims) in series.items():
        writer.add_series(Series(name, arrays[name].shape[1:], units, dims, name, arrays[name].dtype.str))
    for k in range(n):
        writer.append(k * STEP_H * 3600, {name: values[k] for name, values in arrays.items()})
    writer.finish(complete=complete, error=error)
    return path


def feeder_file(path: Path, **kw) -> Path:
    """Two feeders (multipliers 2 and 3), two boundary buses, two branches, 8 steps of 15 min."""
    n = 8
    both = lambda a, b: np.column_stack([a, b]).astype(float)  # noqa: E731  [time, feeder]
    series = {
        # A: +-100 and +-50 kW -> 75 kWh through, half each way; B: discharging 40 kW -> 80 kWh.
        "feeders/battery_kw": (both([100, -100, 50, -50, 0, 0, 0, 0], [40] * n), "kW", ("feeder",)),
        # A: 50 kW curtailed every step -> 100 kWh; B: nothing curtailed.
        "feeders/pv_available_kw": (both([200] * n, [100] * n), "kW", ("feeder",)),
        "feeders/pv_kw": (both([150] * n, [100] * n), "kW", ("feeder",)),
        "feeders/ev_kw": (both([7.2] * 4 + [0] * 4, [0] * n), "kW", ("feeder",)),
        "feeders/ev_owed_kwh": (both([5, 4, 3, 2, 1, 0, 0, 1.5], [0] * 7 + [2]), "kWh", ("feeder",)),
        # A: 2 nodes out for 2 steps -> 1 node-h; B: 1 node out throughout -> 2 node-h.
        "feeders/nodes_outside_band": (np.column_stack([[0, 2, 2, 0, 0, 0, 0, 0], [1] * n]).astype("i4"), "", ("feeder",)),
        "feeders/vmin_pu": (both([0.97, 0.96, 0.93, 0.96, 0.97, 0.97, 0.97, 0.97], [0.94] * n), "pu", ("feeder",)),
        "feeders/vmin_node": (np.column_stack([[0] * n, [1] * n]).astype("i4"), "", ("feeder",)),
        "feeders/vmax_pu": (both([1.01] * n, [1.02, 1.03, 1.04, 1.06, 1.04, 1.03, 1.02, 1.01]), "pu", ("feeder",)),
        "feeders/vmax_node": (np.column_stack([[1] * n, [2] * n]).astype("i4"), "", ("feeder",)),
        "feeders/p_total_kw": (both([1000] * n, [500] * n), "kW", ("feeder",)),
        # bus 5: 10 MW in for 4 steps, 4 MW out for 4 -> 10 MWh import, 4 MWh export; bus 7: 2 MW -> 4 MWh.
        "boundary/p_mw": (np.column_stack([[10] * 4 + [-4] * 4, [2] * n]).astype(float), "MW", ("boundary",)),
        "boundary/q_mvar": (np.ones((n, 2)), "Mvar", ("boundary",)),
        "boundary/vm_pu": (np.full((n, 2), 1.0), "pu", ("boundary",)),
        "transmission/vm_pu": (np.column_stack([[1.0] * n, [0.99] * 3 + [0.96] + [0.99] * 4, [1.04] * n]), "pu", ("bus",)),
        # branch line:0 over 100 % for 2 steps, trafo:0 for all 8 -> 10 steps = 2.5 branch-hours.
        "transmission/loading_percent": (np.column_stack([[50, 120, 130, 90, 80, 70, 60, 50], [101] * n]).astype(float), "%", ("branch",)),
        "coupling/iterations": (np.array([1, 2, 3, 4, 1, 1, 1, 3], dtype="i4"), "", ()),
        "coupling/mismatch_pu": (np.array([1e-7, 2e-7, 5e-6, 1e-8, 0, 0, 0, 1e-9]), "pu", ()),
        "coupling/converged": (np.array([1, 1, 0, 1, 1, 1, 1, 1], dtype="u1"), "", ()),
        "timing/transmission_power_flow_s": (np.full(n, 0.5), "s", ()),
        "timing/transmission_wait_s": (np.full(n, 0.25), "s", ()),
        "timing/feeders_opendss_s": (np.column_stack([[0.1] * n, [0.3] * n]), "s", ("feeder_process",)),
    }
    static = {
        "feeders/name": (["fa", "fb"], ("feeder",)),
        "feeders/multiplier": ([2.0, 3.0], ("feeder",)),
        "feeders/nodes/fa": (["650.1", "632.2"], ("node",)),
        "feeders/nodes/fb": (["1.1", "7.3", "99.2"], ("node",)),
        "boundary/bus": ([5, 7], ("boundary",)),
        "transmission/bus": (["0", "1", "2"], ("bus",)),
        "transmission/branch": (["line:0", "trafo:0"], ("branch",)),
    }
    extra = kw.pop("series", {})
    return write_results(path, {**series, **extra}, static, scenario={"coupling": {"mode": "iterative"}}, **kw)


def test_kpis_of_a_hand_made_file_match_the_numbers_by_hand(tmp_path):
    k = kpis(feeder_file(tmp_path / "hand.h5"))
    assert k["complete"] == "yes" and k["steps"] == 8 and k["coupling"] == "iterative"
    assert k["simulated_h"] == pytest.approx(2.0)
    approx = lambda name, value: (name, pytest.approx(value, rel=1e-12, abs=1e-12))  # noqa: E731
    expected = dict([
        approx("battery_throughput_kWh_per_copy", 75 + 80), approx("battery_throughput_MWh", (75 * 2 + 80 * 3) / 1000),
        approx("battery_discharged_kWh_per_copy", 37.5 + 80), approx("battery_charged_kWh_per_copy", 37.5),
        approx("battery_charged_MWh", 37.5 * 2 / 1000),
        approx("pv_curtailment_kWh_per_copy", 100.0), approx("pv_curtailment_MWh", 0.2),
        approx("pv_available_MWh", (400 * 2 + 200 * 3) / 1000), approx("pv_curtailment_pct", 100 * 0.2 / 1.4),
        approx("ev_kWh_per_copy", 7.2), approx("ev_MWh", 7.2 * 2 / 1000),
        approx("ev_owed_at_end_kWh_per_copy", 3.5), approx("ev_owed_at_end_MWh", (1.5 * 2 + 2 * 3) / 1000),
        approx("voltage_violation_node_h_per_copy", 3.0), approx("voltage_violation_node_h", 1 * 2 + 2 * 3),
        approx("voltage_violation_steps", 8),
        approx("interface_bus5_import_MWh", 10.0), approx("interface_bus5_export_MWh", 4.0),
        approx("interface_bus7_import_MWh", 4.0), approx("interface_bus7_export_MWh", 0.0),
        approx("interface_import_MWh", 14.0), approx("interface_export_MWh", 4.0),
        approx("overload_branch_h", 2.5), approx("overloaded_branches", 2), approx("branch_loading_max_pct", 130),
        approx("feeder_vmin_pu", 0.93), approx("feeder_vmax_pu", 1.06),
        approx("transmission_vmin_pu", 0.96), approx("transmission_vmax_pu", 1.04),
        approx("coupling_iterations_mean", 2.0), approx("coupling_iterations_max", 4),
        approx("coupling_mismatch_max_pu", 5e-6), approx("coupling_steps_not_converged", 1),
        approx("timing_transmission_power_flow_total_s", 4.0), approx("timing_transmission_wait_total_s", 2.0),
        approx("timing_feeders_opendss_total_s", 3.2), approx("timing_feeders_opendss_slowest_process_s", 2.4),
    ])
    assert {name: k[name] for name in expected} == expected
    assert k["feeder_vmin_where"] == "fa node 650.1" and k["feeder_vmin_time"] == "2024-03-01 00:30:00"
    assert k["feeder_vmax_where"] == "fb node 99.2" and k["feeder_vmax_time"] == "2024-03-01 00:45:00"
    assert k["transmission_vmin_where"] == "bus 1" and k["transmission_vmin_time"] == "2024-03-01 00:45:00"
    assert k["branch_loading_max_where"] == "line:0" and k["branch_loading_max_time"] == "2024-03-01 00:30:00"
    assert k["wall_time_s"] >= 0
    # What the file cannot give is NaN, and the note names what the file lacks.
    assert math.isnan(k["distribution_losses_MWh"])
    assert k["distribution_losses_MWh.note"] == "`feeders/losses_kw` (per-feeder losses) is not in this file"
    assert math.isnan(k["transmission_losses_MWh"])
    assert "the scenario names no transmission network" in k["transmission_losses_MWh.note"]
    assert not any(name.startswith("coordinator") for name in k), "no coordinator datasets, no cost section"


def test_cost_terms_and_solver_stats_appear_only_with_coordinator_datasets(tmp_path):
    n = 8
    coordinator = {
        "coordinator/cost_generation": (np.full(n, 100.0), "EUR", ()),
        "coordinator/cost_terms": (np.tile([1.0, 0.5], (n, 1)), "EUR", ("term",)),
        "coordinator/solve_s": (np.linspace(0.1, 0.8, n), "s", ()),
        "coordinator/iterations": (np.array([3, 5, 4, 4, 4, 4, 4, 4], dtype="i4"), "", ()),
    }
    path = feeder_file(tmp_path / "coord.h5", series=coordinator)
    with h5py.File(path, "a") as f:  # term labels beside the series, as devices/ do
        f.create_dataset("coordinator/term", data=["curtailment", "voltage"], dtype=h5py.string_dtype())
    k = kpis(path)
    assert k["coordinator_cost_generation_sum_EUR"] == pytest.approx(800.0)
    assert k["coordinator_cost_terms_curtailment_sum_EUR"] == pytest.approx(8.0)
    assert k["coordinator_cost_terms_voltage_sum_EUR"] == pytest.approx(4.0)
    assert k["coordinator_solve_total_s"] == pytest.approx(3.6) and k["coordinator_solve_max_s"] == pytest.approx(0.8)
    assert k["coordinator_iterations_max"] == 5
    html = write_report([path], tmp_path / "coord.html").read_text()
    assert 'id="coordinator"' in html


def test_derived_transmission_losses_equal_pandapower_branch_losses():
    import pandapower as pp

    from grid.networks import load_network

    net = load_network("case9")
    vm, va, reference = [], [], []
    for level in (0.6, 1.0, 1.2):  # three operating points: three "recorded" rows
        solved = load_network("case9")
        solved.load[["p_mw", "q_mvar"]] *= level
        pp.runpp(solved, numba=False)
        vm.append(solved.res_bus.vm_pu.to_numpy())
        va.append(solved.res_bus.va_degree.to_numpy())
        reference.append(solved.res_line.pl_mw.sum() + solved.res_trafo.pl_mw.sum())
    losses = transmission_losses_mw("case9", [str(b) for b in net.bus.index], np.array(vm), np.array(va))
    np.testing.assert_allclose(losses, reference, rtol=1e-9)
    assert len({round(r, 6) for r in reference}) == 3, "three different operating points"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "small.h5"
    proc = run_tandem("run", str(SMALL), "--duration", "1h", "-q", "-o", str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr
    return out


def test_kpis_of_a_real_run_agree_with_the_file_and_the_summary(small_run):
    k = kpis(small_run)
    s = summarize(small_run)
    assert k["complete"] == "yes" and k["steps"] == 12 and k["scenario"] == "small_iterative"
    assert (k["feeder_vmin_pu"], k["feeder_vmin_where"], k["feeder_vmin_time"]) == (
        s.feeder_vmin.value, s.feeder_vmin.where, s.feeder_vmin.time)
    assert (k["feeder_vmax_pu"], k["feeder_vmax_where"]) == (s.feeder_vmax.value, s.feeder_vmax.where)
    assert (k["transmission_vmin_pu"], k["transmission_vmin_where"]) == (s.transmission_vmin.value, s.transmission_vmin.where)
    assert (k["branch_loading_max_pct"], k["branch_loading_max_where"]) == (s.max_branch_loading.value, s.max_branch_loading.where)
    assert (k["coupling_iterations_mean"], k["coupling_iterations_max"]) == (s.mean_iterations, s.max_iterations)
    assert k["coupling_mismatch_max_pu"] == s.max_mismatch_pu
    with results.dataset.open(small_run) as run:
        outside, m = run["feeders/nodes_outside_band"], run.read("feeders/multiplier")
        hours = 5 / 60
        assert k["voltage_violation_node_h_per_copy"] == pytest.approx(float(outside.sum()) * hours)
        assert k["voltage_violation_node_h"] == pytest.approx(float((outside.sum("time").values * m).sum()) * hours)
        p = run["boundary/p_mw"]
        assert k["interface_import_MWh"] == pytest.approx(float(p.clip(min=0).sum()) * hours)
    # The boundary load is multiplier x feeder power: both sides of the interface give the same energy.
    assert k["feeder_head_MWh"] == pytest.approx(k["interface_import_MWh"], rel=1e-9)
    # Losses of IEEE 30 at a few MW, from the recorded voltages.
    assert 0.5 < k["transmission_losses_MWh"] < 10 and "derived" in k["transmission_losses_MWh.note"]
    assert k["transmission_losses_peak_MW"] > 0
    assert k["wall_time_s"] >= 0 and k["timing_transmission_power_flow_total_s"] > 0
    with results.dataset.open(small_run) as run:
        losses, m = run["feeders/losses_kw"].values, run.read("feeders/multiplier")
    assert k["distribution_losses_MWh"] == pytest.approx(float((losses * m).sum()) * hours / 1000, rel=1e-12)
    # IEEE test feeders lose a few percent of what they draw.
    assert 0.005 < k["distribution_losses_MWh"] / k["feeder_head_MWh"] < 0.08


def _killed_file(folder: Path) -> Path:
    return feeder_file(folder / "killed.h5", complete=False, error=KILLED, planned=20)


@pytest.fixture(scope="module")
def report(small_run, tmp_path_factory):
    """`tandem report` (main_report) of the real run, a killed run and one that recorded nothing:
    (the HTML file, what it printed)."""
    folder = tmp_path_factory.mktemp("pages")
    killed = _killed_file(folder)
    empty = write_results(folder / "empty.h5", {}, complete=False, error="transmission power flow did not converge at step 0")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main_report(SimpleNamespace(results=[str(small_run), str(killed), str(empty)], output=None))
    assert code == 0
    return small_run.with_suffix(".html"), printed.getvalue()


def test_report_is_self_contained_with_one_image_per_plot(small_run, report, tmp_path):
    output, out = report
    assert output.is_file() and f"report: {output}" in out, "default: next to the first file, .html"
    assert "transmission_losses_MWh" in out and "pv_curtailment_MWh" in out and "small_iterative (small)" in out
    empty = kpis(write_results(tmp_path / "empty.h5", {}, complete=False, error="stopped"))
    assert empty["steps"] == 0 and empty["complete"] == "no" and empty["error"] == "stopped"

    page = output.read_text()
    # Self-contained: no element loads anything (scripts are inline), no stylesheet or frame.
    tags = _tags(page)
    assert not [t for t in tags if t[0] in ("link", "iframe", "object", "embed")]
    assert [t for t in tags if t[0] == "script"] and not [t for t in tags if t[0] == "script" and "src" in t[1]]
    loads = [(t, a[k]) for t, a in tags for k in ("src", "href", "data") if k in a and not str(a[k]).startswith(("data:", "#"))]
    assert not loads, f"elements that load a resource: {loads}"
    sources = [a["src"] for t, a in tags if t == "img"]
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # Each plot in its own figure: the heat maps and the histogram as one <img> each, the time
    # series as interactive panels; the plots this data allows are all there.
    figures = re.findall(r'<figure id="([a-z_]+)">', page)
    assert len(figures) == len(set(figures))
    pictures = {"heat_map", "node_heat_map", "loading_histogram"} & set(figures)
    assert len(sources) == len(pictures) == 3
    assert len(re.findall(r'data-root-id="', page)) == len(figures) - len(pictures)
    assert set(figures) >= {"boundary", "transmission", "feeder_envelopes", "heat_map", "violations",
                            "branch_loading", "ders", "curtailment", "coupling"}
    assert set(figures) <= {key for key, _, _ in PLOTS} and "coordinator" not in figures
    # What the files lack is listed from the files: the hand-made file has no losses, the real run has them.
    absent = page[page.index('id="absent"'):]
    assert "hand_made (killed): <code>distribution_losses_MWh</code>" in absent
    assert "small_iterative (small): <code>distribution_losses_MWh</code>" not in absent
    assert "node_heat_map</code>: no node voltages" in absent and "small_iterative (small): <code>node_heat_map" not in absent
    # Incomplete runs get a banner with their error; the one with no step says there is nothing to plot.
    assert f"killed): incomplete: {KILLED}" in page.replace("&#x27;", "'")
    assert "incomplete: transmission power flow did not converge at step 0" in page
    assert "No step was recorded" in page
    # KPI table: one column per run.
    assert page.count("<th>small_iterative (small)</th>") == 1 and "<th>hand_made (killed)</th>" in page
    table = kpi_table([small_run, _killed_file(tmp_path)])
    assert list(table.columns) == ["small_iterative (small)", "hand_made (killed)"]
    assert table.loc["complete"].tolist() == ["yes", "no"]


def _tags(page: str) -> list[tuple[str, dict]]:
    """Every start tag of an HTML page with its attributes (script and style contents skipped)."""
    from html.parser import HTMLParser

    found: list[tuple[str, dict]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Tags(convert_charrefs=True).feed(page)
    return found


def _bokeh_columns(page: str) -> dict[str, np.ndarray]:
    """Every data column embedded in the page's bokeh documents, by name (decoded from the
    JavaScript string bokeh writes: HTML-escaped JSON with base64, maybe gzipped, arrays)."""
    import gzip
    import html as htmllib

    columns: dict[str, np.ndarray] = {}
    for literal in re.findall(r"const docs_json = '(.*?)';", page):
        docs = json.loads(htmllib.unescape(literal.replace("\\\\", "\\")))

        def visit(node):
            if isinstance(node, dict):
                if node.get("name") == "ColumnDataSource":
                    for key, value in node["attributes"]["data"]["entries"]:
                        raw = base64.b64decode(value["array"]["data"])
                        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                        assert key not in columns, f"column {key} twice"
                        columns[key] = np.frombuffer(raw, dtype=value["dtype"])
                for v in node.values():
                    visit(v)
            elif isinstance(node, list):
                for v in node:
                    visit(v)

        visit(docs)
    return columns


def test_interactive_plots_hold_every_step_of_the_files_data(small_run, tmp_path):
    page = write_report([small_run], tmp_path / "one.html").read_text()
    columns = _bokeh_columns(page)
    with results.dataset.open(small_run) as run:
        times_ms = run.times.values.astype("datetime64[ms]").astype(np.int64)
        np.testing.assert_array_equal(columns["x"], times_ms)
        assert len(columns["x"]) == run.n_steps == 12
        vm, p = run.read("boundary/vm_pu"), run.read("boundary/p_mw")
        for j in range(vm.shape[1]):
            np.testing.assert_array_equal(columns[f"boundary/vm_pu[{j}]"], vm[:, j])
            np.testing.assert_array_equal(columns[f"boundary/p_mw[{j}]"], p[:, j])
        np.testing.assert_array_equal(columns["boundary/p_mw[sum]"], p.sum(axis=1))
        vmin, vmax = run.read("feeders/vmin_pu"), run.read("feeders/vmax_pu")
        np.testing.assert_array_equal(columns["feeders/v_pu[1]/lo"], vmin[:, 1])
        np.testing.assert_array_equal(columns["feeders/v_pu[1]/hi"], vmax[:, 1])
        np.testing.assert_array_equal(columns["coupling/iterations"], run.read("coupling/iterations"))
    assert all(len(c) == 12 for c in columns.values()), "every step, no downsampling"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (chromium, chromium-browser or google-chrome): "
                    "install it with 'apt-get install -y chromium' to run this test")
    page, _ = report
    screenshot = tmp_path / "page.png"

    def chromium(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        log = proc.stderr
        for bad in ("Uncaught", "ERROR:CONSOLE", "Not allowed to load local resource", "net::ERR_"):
            assert bad not in log, f"{bad!r} in the browser log:\n{log[-3000:]}"
        return proc

    proc = chromium(f"--screenshot={screenshot}", "--window-size=1400,3000")
    assert screenshot.is_file(), f"no screenshot (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    # bokeh drew every interactive figure: each root <div> got its grid of panels.
    dom = chromium("--dump-dom").stdout
    roots = page.read_text().count('data-root-id="')
    assert roots >= 8 and dom.count('class="bk-GridPlot"') == roots, dom[-2000:]

    import matplotlib.image

    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (3000, 1400)
    rgb = (pixels * 255).round().astype(np.int32)
    colours = np.unique(rgb.reshape(-1, 3) @ np.array([1 << 16, 1 << 8, 1]))
    assert len(colours) > 200, f"only {len(colours)} distinct colours: blank page?"
    white = (rgb >= 250).all(axis=-1).mean()
    assert white < 0.97, f"{white:.1%} of the page is white"
    # The runs' line colours (tab10 blue and orange, in both the panels and the images) appear
    # only if the plots rendered: text is grey and the incomplete-run banner red.
    lines = sum((np.abs(rgb - np.array(c)).max(axis=-1) < 40).sum() for c in ([31, 119, 180], [255, 127, 14]))
    assert lines > 1000, f"only {lines} pixels of the plots' line colours: the images did not render"
