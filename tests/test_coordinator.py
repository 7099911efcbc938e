"""The coordinator federate: a receding-horizon look-ahead OPF in the running federation,
its set-points followed by the feeders and the transmission, every solve recorded, and
failed solves falling back to the last set-points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from results.store import RunFile
from tandem.kpis import kpis
from tests.conftest import ROOT, run_processes, tandem

PV_CENTRALIZED = ROOT / "runs" / "pv_centralized.yaml"
K = 3  # 15-minute intervals of 5-minute steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """The same high-PV study with the centralized coordinator and with no coordination."""
    out = tmp_path_factory.mktemp("coordinator")
    paths = {}
    for scheme in ("centralized", "none"):
        paths[scheme] = out / f"{scheme}.h5"
        done = tandem("run", str(PV_CENTRALIZED), "-q", "--scheme", scheme, "-o", str(paths[scheme]), timeout=600)
        assert done.returncode == 0, done.stderr
        assert not run_processes(out / f"{scheme}_run")
    return paths


def test_every_solve_is_recorded(runs):
    with RunFile(runs["centralized"]) as r:
        n = r.attr("n_steps_planned")
        status = r.read("coordinator/status")
        objective = r.read("coordinator/objective")
        cost = r.read("coordinator/cost")
        terms = list(r.read("coordinator/term").astype(str))
        timing = {k: r.read(f"coordinator/{k}") for k in ("solve_s", "highs_s", "update_s", "plan_s")}
        sizes = r.read("coordinator/n_variables"), r.read("coordinator/n_constraints")
        errors = r.read("coordinator/voltage_error_max_pu"), r.read("coordinator/voltage_error_mean_pu")
        slacks = r.read("coordinator/slacks")
        assert r.attr("coordinator_scheme") == "centralized"
    # A solve after steps 0, K, 2K, ... (its set-points apply from the next step); none after the last.
    solved = np.arange(n) % K == 0
    solved[-1] = False
    assert np.array_equal(status >= 0, solved)
    assert np.all(status[solved] == 0)  # optimal
    assert np.all(np.isnan(objective[~solved]))
    np.testing.assert_allclose(cost[solved].sum(axis=1), objective[solved], rtol=1e-6)
    assert {"generation", "curtailment", "battery_degradation", "penalty_voltage"} <= set(terms)
    assert np.all(timing["plan_s"][solved] >= timing["solve_s"][solved])
    assert np.all(timing["solve_s"][solved] >= timing["highs_s"][solved]) and np.all(timing["highs_s"][solved] > 0)
    assert np.all(sizes[0][solved] == sizes[0][0]) and sizes[0][0] > 1000 and sizes[1][0] > 1000
    assert np.all(slacks[solved] >= -1e-9)
    # Predicted (LinDist3Flow) against realised (OpenDSS) voltages of each plan's first interval:
    # known from the second solve on, and close (the linear model's error, not a bug's).
    later = solved.copy()
    later[0] = False
    assert np.all(np.isfinite(errors[0][later]))
    assert np.all(errors[1][later] < 0.01) and np.all(errors[0][later] < 0.08)
    assert np.all(errors[0][later] >= errors[1][later])


def test_setpoints_are_followed(runs):
    with RunFile(runs["centralized"]) as r:
        dispatch = np.hstack([r.read(f"devices/{f}/battery_dispatch_kw") for f in ("f13", "f123")])
        soc = np.hstack([r.read(f"devices/{f}/battery_soc") for f in ("f13", "f123")])
        pv, available = r.read("feeders/pv_kw"), r.read("feeders/pv_available_kw")
    # Step 0 runs on the batteries' own schedule (idle); then each plan's battery power holds
    # for its interval (steps 1..K, K+1..2K, ...).
    assert np.all(dispatch[0] == 0.0)
    for start in range(1, len(dispatch) - K, K):
        block = dispatch[start:start + K]
        at_limit = (soc[start:start + K] <= 0.1 + 1e-6) | (soc[start:start + K] >= 0.95 - 1e-6)
        assert np.allclose(block[~at_limit.any(axis=1)], block[0], atol=1e-9) or at_limit.any()
    assert np.abs(dispatch[1:]).max() > 10.0  # the coordinator used the batteries (cheaper than curtailing here)
    assert np.all(pv <= available * (1 + 1e-4))


def test_centralized_beats_none(runs):
    """Same profiles, same PV: fewer voltage-violation node-hours and a cheaper generation
    dispatch with the look-ahead OPF than with DERs left to themselves."""
    coordinated, alone = kpis(runs["centralized"]), kpis(runs["none"])
    assert coordinated["voltage_violation_node_h"] < 0.8 * alone["voltage_violation_node_h"]
    assert coordinated["generation_cost"] <= alone["generation_cost"]
    assert coordinated["coordinator_solves"] == 24 and coordinated["coordinator_failed_solves"] == 0


def test_failed_solves_keep_the_last_setpoints(tmp_path):
    """A time limit no solve can meet: every solve fails, the run completes, each failure is
    recorded and the DERs keep what they had (here: their own schedules, as nothing was sent)."""
    data = yaml.safe_load(PV_CENTRALIZED.read_text())
    data["coordination"]["time_limit_s"] = 1e-6
    data["time"]["duration"] = "1h"
    path = tmp_path / "hopeless.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "hopeless.h5"
    done = tandem("run", str(path), "-q", "-o", str(out))
    assert done.returncode == 0, done.stderr
    with RunFile(out) as r:
        assert r.complete
        status = r.read("coordinator/status")
        dispatch = r.read("devices/f13/battery_dispatch_kw")
        pv, available = r.read("feeders/pv_kw"), r.read("feeders/pv_available_kw")
    assert np.all(status[status >= 0] == 2) and np.sum(status == 2) == 4
    assert np.all(dispatch == 0.0)  # idle schedule, no set-point ever arrived
    np.testing.assert_allclose(pv, available, rtol=1e-3)  # nothing curtailed
    assert kpis(out)["coordinator_failed_solves"] == 4


def test_infeasible_period_keeps_the_last_plan():
    """Offline, the same code the federate runs: contradictory generator limits make a period
    infeasible; the plan says so and sends nothing, the last good plan stays, and the next
    consistent data solve again."""
    from coordination.receding_horizon import Measurements, RecedingHorizon
    from scenario.schema import load_scenario
    from tandem.study import resolve_scenario

    scenario, _ = resolve_scenario(load_scenario(PV_CENTRALIZED, {"time.duration": "2h"}))
    rh = RecedingHorizon(scenario)
    measured = Measurements(
        battery_soc={n: np.array([u.soc for u in m.fleet.batteries]) for n, m in rh.models.items()},
        head_voltage_pu={n: 1.0 for n in rh.labels},
        multipliers=np.array([10.0, 20.0]),
        node_vm={n: m.node_voltages() for n, m in rh.models.items()},  # its copies' snapshot, for the held regulators
    )
    good = rh.plan(1, measured)
    assert not good.failed and set(good.setpoints) == {"f13", "f123"}
    assert set(good.setpoints["f123"].battery) == {f"bat_{i}" for i in range(4)}
    big = {"gen:0": 1e5}  # p_min far above p_max
    rh.problem.update(gen_p_min_mw=big)
    bad = rh.plan(1 + K, measured)
    assert bad.failed and bad.setpoints == {} and bad.result.status in ("infeasible", "infeasible or unbounded")
    assert rh.last_plan is good
    rh.problem.update(gen_p_min_mw={"gen:0": 0.0})
    again = rh.plan(1 + 2 * K, measured)
    assert not again.failed and rh.last_plan is again


def test_a_plan_that_holds_regulators_needs_their_voltages():
    """regulators: hold keeps each regulator's measured output voltage in the OPF: without node
    voltages it would hold them wherever the model last had them (offline, a plan of the flagship
    came out with 850,000 of voltage penalties that way), so it refuses, naming the feeder."""
    from coordination.receding_horizon import Measurements, RecedingHorizon
    from scenario.schema import load_scenario
    from tandem.study import resolve_scenario

    scenario, _ = resolve_scenario(load_scenario(PV_CENTRALIZED, {"time.duration": "1h"}))
    rh = RecedingHorizon(scenario)
    measured = Measurements({n: np.array([u.soc for u in m.fleet.batteries]) for n, m in rh.models.items()},
                            {n: 1.0 for n in rh.labels}, node_vm={"f123": rh.models["f123"].node_voltages()})
    with pytest.raises(ValueError, match="feeder f13: coordination.regulators is 'hold' but the measurements give no node voltages"):
        rh.plan(1, measured)


def test_margins_narrow_what_the_plans_may_use():
    """voltage_margin narrows the band each feeder's plan keeps to, rating_margin the MW each
    transmission branch may carry in the plans; KPIs keep the full band and ratings."""
    from coordination.network_data import transmission_data
    from coordination.receding_horizon import RecedingHorizon
    from grid.networks import load_network
    from grid.ratings import apply_ratings
    from scenario.schema import load_scenario
    from tandem.study import resolve_scenario

    scenario, _ = resolve_scenario(load_scenario(PV_CENTRALIZED, {"time.duration": "1h", "coordination.voltage_margin": 0.01,
                                                                   "coordination.rating_margin": 0.2}))
    rh = RecedingHorizon(scenario)
    lo, hi = scenario.coordination.voltage_limits
    assert all((s.v_min, s.v_max) == pytest.approx((lo + 0.01, hi - 0.01)) for s in rh.setups.values())
    net = load_network(scenario.transmission.network)
    apply_ratings(net, scenario.transmission.ratings, scenario.transmission.network)
    rated = [(x.rating_mw, y.rating_mw) for x, y in zip(transmission_data(net).branches, rh.transmission.branches)
             if x.rating_mw]
    assert rated and all(y == pytest.approx(0.8 * x) for x, y in rated)
    with pytest.raises(ValueError, match="voltage_margin: 0.06 pu at both ends leaves no band"):
        load_scenario(PV_CENTRALIZED, {"coordination.voltage_margin": 0.06})


def test_bad_coordination_settings_are_rejected(tmp_path):
    data = yaml.safe_load(PV_CENTRALIZED.read_text())
    data["coordination"]["interval"] = "7min"
    data["coordination"]["horizon"] = "21min"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = tandem("run", str(path), "-q")
    assert done.returncode == 2
    assert "coordination.interval" in done.stderr and "whole number of steps" in done.stderr


def test_default_study_with_high_pv(tmp_path):
    """The built-in study (IEEE 118, four IEEE 13 and four IEEE 123 feeders) with PV at 100 % of
    each feeder's peak load and batteries, over the sunny hours: the centralized scheme leaves
    fewer voltage-violation node-hours than no coordination. (Kept to midday and a 2-hour
    look-ahead at 30 minutes so the test stays short; the scheme is the same.)"""
    from scenario.schema import DEFAULT_SCENARIO

    data = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    for feeder in data["feeders"]:
        feeder["pv"] = {"penetration": 1.0}
        feeder["battery"] = {"penetration": 0.25, "schedule": "idle"}
    # From dawn: "match_bus_load" sizes the copies on the first step, when the feeders still draw power.
    data["time"] = {"start": "2024-07-01T06:00:00", "duration": "7h", "step": "5min"}
    data["coordination"] = {"scheme": "centralized", "interval": "30min", "horizon": "2h", "time_limit_s": 300}
    path = tmp_path / "default_high_pv.yaml"
    path.write_text(yaml.safe_dump(data))
    results = {}
    for scheme in ("centralized", "none"):
        results[scheme] = tmp_path / f"{scheme}.h5"
        done = tandem("run", str(path), "-q", "--scheme", scheme, "-o", str(results[scheme]), timeout=900)
        assert done.returncode == 0, done.stderr
    coordinated, alone = kpis(results["centralized"]), kpis(results["none"])
    assert alone["voltage_violation_node_h"] > 10.0  # the PV does push voltages out of the band
    assert coordinated["voltage_violation_node_h"] < alone["voltage_violation_node_h"]
    assert coordinated["coordinator_failed_solves"] == 0


def test_compare_schemes(tmp_path):
    """`tandem compare` runs the study once per scheme and tabulates the KPIs; an unknown
    scheme is refused before anything runs."""
    import pandas as pd

    done = tandem("compare", str(PV_CENTRALIZED), "--schemes", "none,centralized", "--duration", "1h",
                  "-o", str(tmp_path), "-q", timeout=600)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    assert list(frame.columns) == ["none", "centralized"]
    np.testing.assert_allclose(frame.loc["total_cost"], frame.loc["tso_cost"] + frame.loc["dso_cost"] - frame.loc["storage_value"])
    assert frame.at["coordinator_solves", "centralized"] == 4 and frame.at["coordinator_solves", "none"] == 0
    for scheme in ("none", "centralized"):
        with RunFile(tmp_path / f"pv_centralized_{scheme}.h5") as r:
            assert r.complete
        assert kpis(tmp_path / f"pv_centralized_{scheme}.h5")["generation_cost"] == pytest.approx(frame.at["tso_cost", scheme])
    assert "voltage_violation_node_h [node h]" in frame.index and "centralized" in done.stdout

    bad = tandem("compare", str(PV_CENTRALIZED), "--schemes", "none,magic", "-o", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "coordination.scheme" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_tso_dso_schemes_in_the_federation(tmp_path):
    """Every TSO-DSO scheme runs as the coordinator federate's problem: solves succeed, what
    crossed the interface is recorded, and the DSO worker processes (two for every scheme,
    `coordination.dso_processes`) end with the run."""
    import pandas as pd

    from tests.conftest import processes_mentioning

    data = yaml.safe_load(PV_CENTRALIZED.read_text())
    data["coordination"]["dso_processes"] = 2
    study = tmp_path / "pv_centralized.yaml"
    study.write_text(yaml.safe_dump(data))
    schemes = ["hybrid", "dso_managed", "dso_first", "admm"]  # tso_managed is centralized, run by the tests above
    done = tandem("compare", str(study), "--schemes", ",".join(schemes), "--duration", "30min",
                  "-o", str(tmp_path), "-q", timeout=900)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(tmp_path / "compare.csv", index_col=0)
    assert np.all(frame.loc["coordinator_solves"] == 2) and np.all(frame.loc["coordinator_failed_solves"] == 0)
    assert np.all(frame.loc["values_exchanged"] > 0)
    assert frame.at["iterations_mean", "admm"] > 1 and frame.at["iterations_mean", "hybrid"] == 1
    with RunFile(tmp_path / "pv_centralized_admm.h5") as r:
        assert r.complete and r.attr("coordinator_scheme") == "admm"
    assert not processes_mentioning("coordination.agents")
