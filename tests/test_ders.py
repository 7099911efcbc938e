"""DERs and local controls in a real OpenDSS feeder: PV, batteries, EV chargers,
Volt-VAR / Volt-Watt, regulators and capacitor controls."""

from __future__ import annotations

import numpy as np
import pytest

from grid.ders import VOLT_VAR_CURVE, VOLT_WATT_CURVE, BatteryUnit
from grid.errors import FeederModelError
from grid.feeder import build_feeder
from grid.setpoints import Setpoints
from scenario.schema import load_scenario
from tests.conftest import SMALL


def _feeder(model: str = "ieee123", duration: str = "1d", step: str = "15min", **spec):
    feeder = {"name": "f", "model": model, "bus": 6, "load_diversity": {"enabled": False}, **spec}
    scenario = load_scenario(SMALL, {"feeders": [feeder], "time.duration": duration, "time.step": step,
                                     "time.start": "2024-07-01T00:00:00", "coupling.mode": "loose"})
    return build_feeder(scenario.feeders[0], scenario), scenario


def _terminal(model, element: str, phases: int) -> tuple[float, float, float]:
    """P, Q delivered (kW, kvar) and mean terminal voltage magnitude (V) of an element."""
    dss = model.dss
    dss.Circuit.SetActiveElement(element)
    powers = dss.CktElement.Powers()
    volts = dss.CktElement.VoltagesMagAng()[0 : 2 * phases : 2]
    return -sum(powers[0 : 2 * phases : 2]), -sum(powers[1 : 2 * phases : 2]), float(np.mean(volts))


def _pu(unit, volts: float) -> float:
    return volts / (unit.at.kv * 1000 / (np.sqrt(3) if unit.at.phases > 1 else 1.0))


def test_pv_follows_irradiance_and_is_capped_by_its_inverter():
    model, _ = _feeder(pv={"penetration": 0.3, "count": 5, "kva_ratio": 1.0})
    fleet = model.fleet
    assert sum(u.pmpp_kw for u in fleet.pv) == pytest.approx(0.3 * sum(p.kw for p in model.loads))
    for irradiance in (0.0, 0.2, 0.55, 0.9, 1.0, 1.15):
        fleet.irradiance_kw_m2[:] = irradiance
        model.run(1.0 + 0j, 50)
        readings = fleet.readings(50)
        for unit, p, q in zip(fleet.pv, readings["pv_kw"], readings["pv_kvar"]):
            expected = min(irradiance, 1.0) * unit.pmpp_kw  # kVA equals Pmpp here
            assert p == pytest.approx(expected, rel=1e-3, abs=1e-3)
            assert abs(q) < 1e-3 * unit.kva
        np.testing.assert_allclose(readings["pv_available_kw"], [irradiance * u.pmpp_kw for u in fleet.pv])


def test_pv_curtailment_and_reactive_setpoints_from_outside():
    model, _ = _feeder(pv={"penetration": 0.3, "count": 3, "kva_ratio": 1.2})
    fleet = model.fleet
    fleet.irradiance_kw_m2[:] = 0.9
    first, second, third = fleet.pv
    fleet.set_setpoints(Setpoints(pv={first.name: (0.4, 0.0), second.name: (1.0, -0.3 * second.kva), third.name: (1.0, 0.0)}))
    model.run(1.0 + 0j, 50)
    readings = fleet.readings(50)
    assert readings["pv_kw"][0] == pytest.approx(0.4 * first.pmpp_kw, rel=1e-3)  # curtailed to 40 % of Pmpp
    assert readings["pv_kw"][1] == pytest.approx(0.9 * second.pmpp_kw, rel=1e-3)
    assert readings["pv_kvar"][1] == pytest.approx(-0.3 * second.kva, rel=1e-3)  # absorbs as told
    assert readings["pv_kw"][0] < readings["pv_available_kw"][0]


def test_volt_var_curve_is_reproduced_point_by_point():
    model, _ = _feeder(pv={"penetration": 0.3, "count": 4, "kva_ratio": 1.2}, controls={"volt_var": True, "regulators": False})
    fleet = model.fleet
    fleet.irradiance_kw_m2[:] = 0.5
    xs, ys = np.array(VOLT_VAR_CURVE).T
    seen = []
    for source in (0.90, 0.94, 0.97, 1.0, 1.03, 1.06, 1.09):
        model.run(complex(source, 0.0), 40)
        for unit in fleet.pv:
            _, q, volts = _terminal(model, f"PVSystem.{unit.name}", unit.at.phases)
            v = _pu(unit, volts)
            seen.append(v)
            assert q / unit.kva == pytest.approx(np.interp(v, xs, ys), abs=0.005), f"{unit.name} at {v:.4f} pu"
    assert min(seen) < 0.93 and max(seen) > 1.05, "the sweep must cover both sloped parts of the curve"


def test_volt_watt_limits_active_power_at_high_voltage():
    model, _ = _feeder(pv={"penetration": 0.3, "count": 4, "kva_ratio": 1.2}, controls={"volt_watt": True, "regulators": False})
    fleet = model.fleet
    fleet.irradiance_kw_m2[:] = 1.0
    xs, ys = np.array(VOLT_WATT_CURVE).T
    limited = 0
    for source in (1.05, 1.08, 1.10):
        model.run(complex(source, 0.0), 40)
        for unit in fleet.pv:
            p, _, volts = _terminal(model, f"PVSystem.{unit.name}", unit.at.phases)
            # InvControl settles within its own convergence tolerance, about 1 % of Pmpp.
            assert p / unit.pmpp_kw == pytest.approx(np.interp(_pu(unit, volts), xs, ys), abs=0.015)
            limited += p < 0.9 * unit.pmpp_kw
    assert limited >= 4, "high voltages must hold PV back"


def test_battery_energy_bookkeeping_closes():
    model, scenario = _feeder(battery={"penetration": 0.2, "count": 4, "hours": 2, "soc_initial": 0.5,
                                       "efficiency_charge": 0.93, "efficiency_discharge": 0.9})
    fleet = model.fleet
    hours = scenario.time.step_seconds / 3600
    soc = [np.array([u.soc for u in fleet.batteries])]
    dispatch, terminal = [], []
    for k in range(scenario.time.n_steps):
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        dispatch.append(readings["battery_dispatch_kw"])
        terminal.append(readings["battery_kw"])
        model.end_step()
        soc.append(np.array([u.soc for u in fleet.batteries]))
        np.testing.assert_allclose(readings["battery_soc"], soc[-1], rtol=0, atol=1e-12)
    soc, dispatch, terminal = np.array(soc), np.array(dispatch), np.array(terminal)
    kwh = np.array([u.kwh_rated for u in fleet.batteries])
    booked = np.where(dispatch > 0, -dispatch / 0.9, -dispatch * 0.93) * hours
    np.testing.assert_allclose(np.diff(soc, axis=0) * kwh, booked, rtol=0, atol=1e-6)
    assert (dispatch > 0).any() and (dispatch < 0).any(), "the day must see charging and discharging"
    assert soc.min() >= 0.1 - 1e-12 and soc.max() <= 0.95 + 1e-12
    assert np.isclose(soc.max(), 0.95) and np.isclose(soc.min(), 0.1), "the schedule fills and empties it"
    np.testing.assert_allclose(terminal, dispatch, rtol=1e-3, atol=1e-3)  # OpenDSS delivers what was dispatched


def test_battery_setpoints_are_clipped_by_rating_and_soc():
    model, scenario = _feeder(battery={"penetration": 0.1, "count": 1, "hours": 1, "soc_initial": 0.2, "schedule": "idle"})
    battery = model.fleet.batteries[0]
    hours = scenario.time.step_seconds / 3600
    model.fleet.set_setpoints(Setpoints(battery={battery.name: 10 * battery.kw_rated}))
    model.run(1.0 + 0j, 0)
    expected = min(battery.kw_rated, (0.2 - 0.1) * battery.kwh_rated * battery.eta_discharge / hours)
    assert battery.p_kw == pytest.approx(expected)
    model.end_step()
    assert battery.soc == pytest.approx(0.1) if expected < battery.kw_rated else battery.soc > 0.1


def test_fleet_dispatch_matches_each_battery_own_rules():
    """The fleet dispatches all batteries at once; each must get what its own rules give:
    set-point or schedule, clipped by rating and SOC, and the SOC booked from it."""
    from grid.ders import time_of_day_dispatch

    model, scenario = _feeder(battery={"penetration": 0.3, "count": 6, "hours": 1, "soc_initial": 0.3})
    fleet, spec = model.fleet, scenario.feeders[0].battery
    hours = scenario.time.step_seconds / 3600
    names = [u.name for u in fleet.batteries]
    rng = np.random.default_rng(5)
    checked = 0
    for k in range(scenario.time.n_steps):
        if k % 7 == 0:  # new set-points now and then: some batteries back on their schedule
            fleet.set_setpoints(Setpoints(battery={n: (None if rng.random() < 0.3 else float(rng.uniform(-2, 2) * u.kw_rated))
                                                   for n, u in zip(names, fleet.batteries)}))
        soc_before = [u.soc for u in fleet.batteries]
        wanted = [u.setpoint_kw if u.setpoint_kw is not None else
                  time_of_day_dispatch(u, fleet.local_hours[k], spec.charge_hours, spec.discharge_hours)
                  for u in fleet.batteries]
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        for i, (unit, want, soc) in enumerate(zip(fleet.batteries, wanted, soc_before)):
            alone = BatteryUnit(unit.name, unit.at, unit.kw_rated, unit.kwh_rated, unit.eta_charge, unit.eta_discharge,
                                unit.soc_min, unit.soc_max, soc)
            alone.p_kw = alone.feasible_power(want, hours)
            assert readings["battery_dispatch_kw"][i] == alone.p_kw == unit.p_kw
            assert readings["battery_soc"][i] == alone.soc_after(hours)
            checked += alone.p_kw != 0
        model.end_step()
        np.testing.assert_array_equal([u.soc for u in fleet.batteries], readings["battery_soc"])
    assert checked > 50


def test_ev_chargers_deliver_the_session_energy():
    model, scenario = _feeder(ev={"penetration": 0.05, "charger_kw": 7.2, "energy_kwh": [10, 20]}, duration="2d")
    fleet = model.fleet
    hours = scenario.time.step_seconds / 3600
    delivered = np.zeros(len(fleet.evs))
    for k in range(scenario.time.n_steps):
        model.run(1.0 + 0j, k)
        delivered += np.array([u.p_kw for u in fleet.evs]) * hours
        assert all(0 <= u.p_kw <= u.max_kw + 1e-9 for u in fleet.evs)
        model.end_step()
    for unit, energy in zip(fleet.evs, delivered):
        sessions = [s for s in unit.sessions if 0 <= s.arrive_step and s.depart_step <= scenario.time.n_steps]
        assert energy >= sum(s.energy_kwh for s in sessions) - 1e-9  # every whole session was served
    assert delivered.sum() > 0


def test_regulators_tap_when_voltage_leaves_their_band():
    model, _ = _feeder(model="ieee13")
    model.run(1.0 + 0j, 0)
    before = model.fleet.readings(0)["regulator_taps"]
    model.run(0.95 + 0j, 0)
    after = model.fleet.readings(0)["regulator_taps"]
    assert np.all(after > before) and np.all(after - before >= 3)
    fixed, _ = _feeder(model="ieee13", controls={"regulators": False})
    fixed.run(1.0 + 0j, 0)
    start = fixed.fleet.readings(0)["regulator_taps"]
    fixed.run(0.95 + 0j, 0)
    np.testing.assert_array_equal(fixed.fleet.readings(0)["regulator_taps"], start)


def test_capacitor_control_switches_banks_off_at_high_voltage():
    model, _ = _feeder(controls={"capacitors": True, "regulators": False})
    model.run(1.0 + 0j, 0)
    assert model.fleet.readings(0)["capacitor_steps"].sum() > 0
    model.run(1.08 + 0j, 0)
    assert model.fleet.readings(0)["capacitor_steps"].sum() == 0
    fixed, _ = _feeder(controls={"capacitors": False, "regulators": False})
    fixed.run(1.08 + 0j, 0)
    assert fixed.fleet.readings(0)["capacitor_steps"].sum() == len(fixed.fleet.capacitors)


def test_explicit_der_buses_and_unknown_ones():
    model, _ = _feeder(pv={"penetration": 0.1, "buses": ["48", "7.1"]})
    assert [(u.at.bus, u.at.phases) for u in model.fleet.pv] == [("48", 3), ("7.1", 1)]
    with pytest.raises(FeederModelError, match="feeder f: unknown feeder bus 'nowhere'"):
        _feeder(pv={"penetration": 0.1, "buses": ["nowhere"]})


def test_load_profile_and_irradiance_from_files(tmp_path):
    """A kW load profile in Berlin time and a W/m2 irradiance file without timestamps drive the feeder."""
    import pandas as pd

    stamps = pd.date_range("2024-07-01", periods=30, freq="1h", tz="Europe/Berlin")
    kw = 100 + 50 * np.sin(np.arange(30) / 4)
    pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%S%z"), "load [kW]": kw}).to_csv(tmp_path / "load.csv", index=False)
    pd.DataFrame({"irradiance": np.linspace(0, 900, 100)}).to_csv(tmp_path / "sun.csv", index=False)
    load = {"file": str(tmp_path / "load.csv")}
    sun = {"file": str(tmp_path / "sun.csv"), "start": "2024-07-01T00:00:00+02:00", "resolution": "15min", "units": "W/m2"}
    scenario = load_scenario(SMALL, {
        "feeders": [{"name": "f", "model": "ieee13", "bus": 6, "load_profile": load, "load_diversity": {"enabled": False},
                     "pv": {"penetration": 0.2, "count": 2}}],
        "solar": {"file": sun}, "time.start": "2024-07-01T00:00:00+02:00", "time.duration": "6h", "time.step": "30min",
        "coupling.mode": "loose",
    })
    model = build_feeder(scenario.feeders[0], scenario)
    # Midnight in Berlin is the file's first row; hourly kW interpolated to 30 min, scaled by the file's peak.
    expected = np.interp(np.arange(12) / 2, np.arange(30), kw)
    np.testing.assert_allclose(model.load_levels[0], expected / kw.max(), rtol=1e-9)
    np.testing.assert_allclose(model.fleet.irradiance_kw_m2, np.linspace(0, 900, 100)[:24].reshape(12, 2).mean(axis=1) / 1000, rtol=1e-9)


def test_bad_profile_file_is_rejected_before_the_run(tmp_path):
    from tests.conftest import tandem

    (tmp_path / "load.csv").write_text("timestamp,load [kW]\n2024-07-01T00:00,1\n2024-07-01T02:00,2\n2024-07-01T01:00,3\n")
    import yaml

    data = yaml.safe_load(SMALL.read_text())
    data["feeders"][0]["load_profile"] = {"file": "load.csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    proc = tandem("run", str(tmp_path / "s.yaml"), "-o", str(tmp_path / "out.h5"), timeout=60)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "load.csv" in line and "2024-07-01" in line
    assert not (tmp_path / "out_run").exists()


def test_synthetic_feeder_from_the_scenario(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model, _ = _feeder(model="synthetic:200", pv={"penetration": 0.3})
    assert model.master == tmp_path / "tandem" / "synthetic" / "200-seed0" / "master.dss"
    model.run(1.0 + 0j, 40)
    assert model.substation_power()[0].min() > 0 and 0.9 < model.voltage_stats()[0] <= 1.05
    again, _ = _feeder(model="synthetic:200")
    assert again.node_names == model.node_names  # the cached model is reused


def test_ev_charging_in_a_run_that_starts_at_noon():
    scenario_noon = load_scenario(SMALL, {"feeders": [{"name": "f", "model": "ieee123", "bus": 6, "ev": {"penetration": 0.05}}],
                                          "time.start": "2024-07-01T12:00:00", "time.duration": "12h", "time.step": "15min"})
    model = build_feeder(scenario_noon.feeders[0], scenario_noon)
    delivered = 0.0
    for k in range(scenario_noon.time.n_steps):
        model.run(1.0 + 0j, k)
        delivered += sum(u.p_kw for u in model.fleet.evs) * 0.25
        model.end_step()
    assert delivered > 0, "EVs arriving in the evening charge although the run starts at noon"


def test_zoned_parquet_profile_in_a_feeder_process(tmp_path):
    """pyarrow and helics in one process, as in a feeder federate (they crash in the wrong order)."""
    import subprocess
    import sys

    import pandas as pd

    stamps = pd.date_range("2024-07-01", periods=30, freq="1h", tz="Europe/Berlin")
    pd.DataFrame({"timestamp": stamps, "load [kW]": np.linspace(50, 100, 30)}).to_parquet(tmp_path / "load.parquet")
    script = (
        "import federates.feeders\n"
        "from scenario.schema import load_scenario\n"
        "from grid.feeder import build_feeder\n"
        f"s = load_scenario({str(SMALL)!r}, {{'feeders': [{{'name': 'f', 'model': 'ieee13', 'bus': 6, "
        f"'load_profile': {{'file': {str(tmp_path / 'load.parquet')!r}}}}}], 'time.start': '2024-07-01T00:00:00+02:00'}})\n"
        "print(round(float(build_feeder(s.feeders[0], s).load_levels.max()), 6))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=SMALL.parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) <= 1.0


def test_battery_windows_may_wrap_midnight():
    from grid.ders import BatteryUnit, time_of_day_dispatch

    battery = BatteryUnit("b", None, kw_rated=100.0, kwh_rated=400.0, eta_charge=1.0, eta_discharge=1.0,
                          soc_min=0.0, soc_max=1.0, soc=0.5)
    night, evening = (22.0, 6.0), (17.0, 21.0)
    assert time_of_day_dispatch(battery, 23.5, night, evening) == pytest.approx(-50.0)  # 400 kWh over 8 h
    assert time_of_day_dispatch(battery, 3.0, night, evening) == pytest.approx(-50.0)
    assert time_of_day_dispatch(battery, 12.0, night, evening) == 0.0
    assert time_of_day_dispatch(battery, 18.0, night, evening) == pytest.approx(100.0)  # capped by the rating
    with pytest.raises(Exception, match="two different hours"):
        load_scenario(SMALL, {"feeders": [{"name": "f", "model": "ieee13", "bus": 6, "battery": {"charge_hours": [5, 5]}}]})


# -- the kinds table ------------------------------------------------------------------------


def test_readings_are_declared_once_per_kind():
    """fleet.readings returns exactly the declared readings, in order, one value per unit or
    device; the declared totals and device series start with the wire's present layout."""
    from federates.interfaces import DER_DEVICES, DER_TOTALS
    from grid.ders import DEVICE_SERIES, READINGS, TOTALS

    assert TOTALS[: len(DER_TOTALS)] == DER_TOTALS and DEVICE_SERIES[: len(DER_DEVICES)] == DER_DEVICES
    assert len({r.name for r in READINGS}) == len(READINGS) and all(r.description and (r.total or r.device) for r in READINGS)
    model, _ = _feeder(model="ieee13", pv={"penetration": 0.2, "count": 2}, battery={"penetration": 0.1, "count": 3},
                       ev={"penetration": 0.02}, dg={"penetration": 0.2, "count": 2}, flexible_load={"penetration": 0.1, "count": 4},
                       controls={"capacitors": True})
    fleet = model.fleet
    model.run(1.0 + 0j, 40)
    readings = fleet.readings(40)
    assert list(readings) == [r.name for r in READINGS]
    sizes = {"pv": 2, "battery": 3, "ev": len(fleet.evs), "dg": 2, "flexible_load": 4,
             "regulator": len(fleet.regulators), "capacitor": len(fleet.capacitors)}
    devices = fleet.devices()
    assert {dim: len(names) for dim, names in devices.items()} == {dim: sizes[dim] for dim in devices}
    for r in READINGS:
        prefix = r.name.split("_")[0]
        kind = {"flexible": "flexible_load", "regulator": "regulator", "capacitor": "capacitor"}.get(prefix, prefix)
        assert len(readings[r.name]) == sizes[kind], r.name
        if r.device:
            assert len(readings[r.name]) == len(devices[r.device])
    bare, _ = _feeder(model="ieee13")
    bare.run(1.0 + 0j, 40)
    assert list(bare.fleet.readings(40)) == [r.name for r in READINGS]  # kinds without units read empty
    assert set(bare.fleet.state()) == {"pv", "battery", "battery_soc_next", "ev"}  # checkpoints as before


# -- dispatchable generators ----------------------------------------------------------------


def _balance(model, readings) -> tuple[float, float]:
    """Head P + generation - consumption - losses (kW; zero to solver tolerance), and the consumption."""
    consumption = float(model.alt.Load.TotalPowers().real.sum())
    generation = sum(float(readings[key].sum()) for key in ("pv_kw", "battery_kw", "dg_kw"))
    return float(model.substation_power()[0].sum()) + generation - consumption - model.losses()[0], consumption


def test_energy_balances_with_every_kind_every_step():
    model, scenario = _feeder(model="ieee13", pv={"penetration": 0.3, "count": 3}, battery={"penetration": 0.1, "count": 2},
                              ev={"penetration": 0.05}, dg={"penetration": 0.3, "count": 2, "ramp_pu_per_hour": 1.0},
                              flexible_load={"penetration": 0.2, "count": 3})
    fleet = model.fleet
    rng = np.random.default_rng(3)
    generated = 0
    for k in range(scenario.time.n_steps):
        if k % 5 == 0:
            fleet.set_setpoints(Setpoints(dg={u.name: (float(rng.uniform(-0.2, 1.2) * u.kw_rated), float(rng.uniform(-1, 1) * u.kva))
                                    for u in fleet.units("dg")},
                                flexible_load={u.name: float(rng.uniform(-1, 1) * u.peak_kw) for u in fleet.units("flexible_load")}))
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        residual, consumption = _balance(model, readings)
        assert abs(residual) < 1e-4 * consumption, f"step {k}: {residual} kW"
        # OpenDSS delivers what was dispatched: generators and flexible loads are constant power.
        np.testing.assert_allclose(readings["dg_kw"], readings["dg_dispatch_kw"], rtol=1e-3, atol=1e-4 * fleet.units("dg")[0].kw_rated)
        flex = model.alt.Load.TotalPowers()[-len(fleet.units("flexible_load")):]
        np.testing.assert_allclose(flex.real, readings["flexible_load_kw"], rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(flex.imag, flex.real * fleet.units("flexible_load")[0].q_per_p, rtol=1e-3, atol=1e-3)
        generated += float(readings["dg_kw"].sum()) > 1.0
        model.end_step()
    assert generated > 20, "the generators must run for the balance to mean something"


def test_a_generator_at_its_setpoint_relieves_the_feeder_head():
    model, _ = _feeder(model="ieee13", dg={"penetration": 0.2, "buses": ["675"]})
    unit = model.fleet.units("dg")[0]
    model.run(1.0 + 0j, 60)
    head_off, losses_off = model.substation_power()[0].sum(), model.losses()[0]
    loads_off = model.alt.Load.TotalPowers().real.sum()
    model.fleet.set_setpoints(Setpoints(dg={unit.name: (0.8 * unit.kw_rated, 0.0)}))
    model.run(1.0 + 0j, 60)
    readings = model.fleet.readings(60)
    assert readings["dg_dispatch_kw"][0] == pytest.approx(0.8 * unit.kw_rated)  # no ramp limit: at once
    head_on, losses_on = model.substation_power()[0].sum(), model.losses()[0]
    loads_on = model.alt.Load.TotalPowers().real.sum()
    # The head takes P less, give or take the change of losses and of the voltage-dependent loads.
    drop = head_off - head_on
    assert drop == pytest.approx(readings["dg_kw"][0] + (losses_off - losses_on) + (loads_off - loads_on), rel=1e-4)
    assert drop == pytest.approx(0.8 * unit.kw_rated, rel=0.05)


def test_generators_keep_ramp_rating_and_kva_limits_under_extreme_setpoints():
    model, scenario = _feeder(model="ieee13", dg={"penetration": 0.3, "count": 3, "ramp_pu_per_hour": 1.2, "kva_ratio": 1.1})
    fleet = model.fleet
    hours = scenario.time.step_seconds / 3600
    rating = np.array([u.kw_rated for u in fleet.units("dg")])
    kva = np.array([u.kva for u in fleet.units("dg")])
    rng = np.random.default_rng(11)
    previous, moved = np.zeros(3), 0
    for k in range(48):
        if k % 3 == 0:
            fleet.set_setpoints(Setpoints(dg={u.name: (float(rng.choice([-5, 0, 0.4, 10]) * u.kw_rated), float(rng.choice([-10, 0, 10]) * u.kva))
                                    for u in fleet.units("dg")}))
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        p = readings["dg_dispatch_kw"]
        q = np.array(fleet.controllers["dg"]._q)
        assert np.all(np.abs(p - previous) <= 1.2 * rating * hours * (1 + 1e-12))
        assert np.all((p >= 0) & (p <= rating))
        assert np.all(p**2 + q**2 <= kva**2 * (1 + 1e-9))
        np.testing.assert_allclose(readings["dg_kvar"], q, rtol=1e-3, atol=1e-2)
        moved += int(np.sum(np.isclose(np.abs(p - previous), 1.2 * rating * hours)))
        model.end_step()
        previous = p
        np.testing.assert_array_equal([u.p_kw for u in fleet.units("dg")], p)
    assert moved > 10, "the ramp limit must bind"


def test_generator_commitment_minimum_output_and_times():
    model, scenario = _feeder(model="ieee13", step="30min", dg={"penetration": 0.2, "count": 1, "commitment": True,
                                                                 "p_min_pu": 0.4, "min_up_hours": 2, "min_down_hours": 1})
    fleet = model.fleet
    unit = fleet.units("dg")[0]

    def step(k: int, setpoint: float) -> float:
        fleet.set_setpoints(Setpoints(dg={unit.name: (setpoint * unit.kw_rated, 0.0)}))
        model.run(1.0 + 0j, k)
        p = float(fleet.readings(k)["dg_dispatch_kw"][0]) / unit.kw_rated
        model.end_step()
        return p

    assert step(0, 0.1) == pytest.approx(0.4)  # on: at least the minimum stable output
    assert [step(k, 0.0) for k in (1, 2, 3)] == pytest.approx([0.4, 0.4, 0.4])  # 2 h up (4 steps) first
    assert step(4, 0.0) == 0.0 and not unit.on
    assert step(5, 1.0) == 0.0  # 1 h down (2 steps) first
    assert step(6, 1.0) == pytest.approx(1.0) and unit.on and unit.hours_in_state == 0.5


def test_generator_schedule_runs_only_in_its_window():
    model, scenario = _feeder(model="ieee13", dg={"penetration": 0.2, "count": 2, "schedule": "window", "run_hours": [22, 6]})
    fleet = model.fleet
    for k in range(scenario.time.n_steps):
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        hour = fleet.local_hours[k]
        inside = hour >= 22 or hour < 6
        np.testing.assert_array_equal(readings["dg_dispatch_kw"], [u.kw_rated if inside else 0.0 for u in fleet.units("dg")])
        assert (readings["dg_kw"] > 1.0).all() if inside else (np.abs(readings["dg_kw"]) < 1e-9).all()
        model.end_step()
    fleet.set_setpoints(Setpoints(dg={fleet.units("dg")[0].name: (10.0, 0.0)}))
    model.run(1.0 + 0j, 0)  # midnight: the set-point overrides the schedule, the other unit keeps it
    np.testing.assert_array_equal(fleet.readings(0)["dg_dispatch_kw"], [10.0, fleet.units("dg")[1].kw_rated])
    with pytest.raises(KeyError, match="unknown DER 'dg_7'"):
        fleet.set_setpoints(Setpoints(flexible_load={}, dg={"dg_0": None, "dg_7": (1.0, 0.0)}))
    assert fleet.units("dg")[0].setpoint == (10.0, 0.0)  # an unknown name changes nothing


# -- flexible loads -------------------------------------------------------------------------


def test_flexible_load_shift_is_clipped_and_the_energy_owed_tracked_exactly():
    model, scenario = _feeder(model="ieee123", flexible_load={"penetration": 0.3, "count": 5, "up_pu": 0.4, "down_pu": 0.9,
                                                              "power_factor": 0.9})
    fleet = model.fleet
    units = fleet.units("flexible_load")
    hours = scenario.time.step_seconds / 3600
    assert sum(u.peak_kw for u in units) == pytest.approx(0.3 * sum(p.kw for p in model.loads))
    shape = model._load_kw @ model.load_levels / model._load_kw.sum()
    rng = np.random.default_rng(2)
    owed = np.zeros(len(units))
    clipped = {"up": 0, "down": 0, "zero": 0}
    for k in range(scenario.time.n_steps):
        if k % 4 == 0:
            fleet.set_setpoints(Setpoints(flexible_load={u.name: (None if rng.random() < 0.2 else float(rng.uniform(-2, 2) * u.peak_kw))
                                               for u in units}))
        model.run(1.0 + 0j, k)
        readings = fleet.readings(k)
        base = np.array([u.peak_kw for u in units]) * shape[k] / shape.max()
        wanted = np.array([0.0 if u.setpoint_kw is None else u.setpoint_kw for u in units])
        expected = np.maximum(np.clip(wanted, [-0.9 * u.peak_kw for u in units], [0.4 * u.peak_kw for u in units]), -base)
        np.testing.assert_allclose(readings["flexible_load_shift_kw"], expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(readings["flexible_load_kw"], base + expected, rtol=1e-12, atol=1e-9)
        assert (readings["flexible_load_kw"] >= 0).all()
        clipped["up"] += int((wanted > 0.4 * units[0].peak_kw).sum())
        clipped["down"] += int((wanted < -0.9 * units[0].peak_kw).sum())
        clipped["zero"] += int((expected == -base).sum())
        owed = owed - readings["flexible_load_shift_kw"] * hours
        np.testing.assert_array_equal(readings["flexible_load_owed_kwh"], owed)
        model.end_step()
        np.testing.assert_array_equal([u.owed_kwh for u in units], owed)
    assert min(clipped.values()) > 0, clipped


# -- checkpoints ----------------------------------------------------------------------------


def test_new_kinds_continue_bit_for_bit_from_a_checkpoint():
    import json

    spec = dict(model="ieee13", battery={"penetration": 0.1, "count": 1},
                dg={"penetration": 0.3, "count": 2, "ramp_pu_per_hour": 0.8, "commitment": True, "min_up_hours": 3,
                    "schedule": "window", "run_hours": [6, 9]},
                flexible_load={"penetration": 0.2, "count": 3})
    checkpoint = 40

    def step(model, k: int) -> np.ndarray:
        if k % 6 == 1:
            rng = np.random.default_rng(k)
            fleet = model.fleet
            fleet.set_setpoints(Setpoints(dg={u.name: (None if rng.random() < 0.3 else (float(rng.uniform(0, 1.2) * u.kw_rated), 50.0))
                                    for u in fleet.units("dg")},
                                flexible_load={u.name: float(rng.uniform(-1, 1) * u.peak_kw) for u in fleet.units("flexible_load")}))
        model.run(complex(1.0 + 0.01 * np.sin(k / 3), 0.002 * k), k)
        p, q = model.substation_power()
        return np.concatenate([p, q, model.node_voltages(), *model.fleet.readings(k).values()])

    original, scenario = _feeder(**spec)
    expected = {}
    for k in range(scenario.time.n_steps):
        expected[k] = step(original, k)
        if k == checkpoint:
            state = json.loads(json.dumps(original.state()))
        original.end_step()
    assert {"dg", "flexible_load"} <= set(state["fleet"])
    assert any(row[1] for row in state["fleet"]["dg"]) and any(row[0] for row in state["fleet"]["flexible_load"])
    restored, _ = _feeder(**spec)
    assert restored.restore(state) == 0.0
    for k in range(checkpoint + 1, scenario.time.n_steps):
        np.testing.assert_array_equal(step(restored, k), expected[k], err_msg=f"step {k}")
        restored.end_step()
    assert restored.fleet.state() == original.fleet.state()


def test_new_kinds_replay_from_a_journal_bit_for_bit():
    """Under inverter controls a feeder is restored by replaying its journal: set-points of
    the new kinds go through JSON (pairs become lists) and come out the same."""
    import json

    spec = dict(model="ieee13", pv={"penetration": 0.3, "count": 2}, controls={"volt_var": True},
                dg={"penetration": 0.2, "count": 2, "ramp_pu_per_hour": 1.0}, flexible_load={"penetration": 0.1, "count": 2})
    checkpoint = 30

    def step(model, k: int) -> np.ndarray:
        if k % 5 == 2:
            rng = np.random.default_rng(k)
            model.set_setpoints(Setpoints(dg={u.name: (float(rng.uniform(0, 1) * u.kw_rated), float(rng.uniform(-50, 50))) for u in model.fleet.units("dg")},
                                flexible_load={u.name: float(rng.uniform(-1, 1) * u.peak_kw) for u in model.fleet.units("flexible_load")}))
        readings = model.step(complex(1.0 + 0.01 * np.sin(k / 3), 0.0), k)
        return np.concatenate([readings.p_kw, readings.node_vm_pu, *readings.ders.values()])

    original, scenario = _feeder(**spec)
    original.journal = []
    expected = {}
    for k in range(scenario.time.n_steps // 2):
        expected[k] = step(original, k)
        if k == checkpoint:
            state = json.loads(json.dumps(original.state()))
        original.end_step()
    replayed, _ = _feeder(**spec)
    assert replayed.restore(state) == 0.0  # the fleet's state after the replay is the saved one, too
    for k in range(checkpoint + 1, scenario.time.n_steps // 2):
        np.testing.assert_array_equal(step(replayed, k), expected[k], err_msg=f"step {k}")
        replayed.end_step()
