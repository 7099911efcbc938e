"""`tandem flex`: the P-Q region of a scenario's feeder at a time, run as a user runs it."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.conftest import tandem

SCENARIO = """
name: flex
transmission: {network: case30}
feeders:
  - name: f13
    model: ieee13
    bus: 5
    multiplier: 1.0
    pv: {penetration: 0.6, count: 4}
    battery: {penetration: 0.2, count: 2}
time: {start: "2024-07-01T00:00:00", duration: 1d, step: 1h}
solar: {variability: 0.0}
"""


def parse(stdout: str) -> dict[str, dict]:
    """label -> {"p": (min, max), "q": (min, max), "vertices": [(P, Q), ...]} from the printout."""
    out: dict[str, dict] = {}
    label = None
    for line in stdout.splitlines():
        head = re.match(r"^(\S.*?): P (\S+) \.\. (\S+) kW, Q (\S+) \.\. (\S+) kvar", line)
        if head:
            label = head.group(1)
            out[label] = {"p": (float(head.group(2)), float(head.group(3))), "q": (float(head.group(4)), float(head.group(5)))}
        elif line.strip().startswith("vertices") and label:
            out[label]["vertices"] = [(float(p), float(q)) for p, q in re.findall(r"\((\S+), (\S+)\)", line)]
    return out


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("flex") / "flex.yaml"
    path.write_text(SCENARIO)
    return path


def test_flex_region_and_its_variants(scenario, tmp_path):
    png = tmp_path / "region.png"
    run = tandem("flex", str(scenario), "--feeder", "f13", "--time", "2024-07-01T12:00", "--directions", "16",
                 "-o", str(png))
    assert run.returncode == 0, run.stderr
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    regions = parse(run.stdout)
    assert set(regions) == {"as is", "taps +4 steps", "taps -4 steps", "no PV output", "no storage or EV"}
    base, no_pv, no_storage = regions["as is"], regions["no PV output"], regions["no storage or EV"]
    for region in regions.values():
        v = np.array(region["vertices"])
        assert len(v) >= 3
        assert v[:, 0].min() == pytest.approx(region["p"][0]) and v[:, 0].max() == pytest.approx(region["p"][1])
    # At noon the PV (60 % of the feeder's peak load) lets the head go much lower; curtailing all
    # of it reaches what no PV gives, so the largest P is the same.
    assert no_pv["p"][0] > base["p"][0] + 500.0
    assert no_pv["p"][1] == pytest.approx(base["p"][1], abs=1.0)
    # Batteries (20 % of the peak) charging raise the largest P.
    assert base["p"][1] > no_storage["p"][1] + 100.0
    # Taps change what the voltage limits allow, so the regions differ.
    assert regions["taps +4 steps"]["q"] != pytest.approx(base["q"], abs=1.0)


@pytest.mark.parametrize("args, message", [
    (["--feeder", "nope", "--time", "12h"], "unknown feeder 'nope'"),
    (["--feeder", "f13", "--time", "2024-07-05T12:00"], "outside the run"),
    (["--feeder", "f13", "--time", "12"], "needs units"),
    (["--feeder", "f13", "--time", "12h", "--horizon", "20"], "runs past the end"),
])
def test_flex_bad_input(scenario, args, message):
    run = tandem("flex", str(scenario), *args)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], run.stderr
