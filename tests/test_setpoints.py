"""DER set-points from outside: an external controller federate (coordination.scheme =
external) joins the broker and the feeders apply what it sends, from the step it arrives."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
import yaml

from results.store import RunFile
from tests.conftest import ROOT, SMALL, run_processes

CONTROLLER = r"""
import json, sys
import helics as h
port, step, first_step = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
info = h.helicsCreateFederateInfo()
h.helicsFederateInfoSetCoreTypeFromString(info, "zmq")
h.helicsFederateInfoSetCoreInitString(info, f"--federates=1 --broker_port={port} --timeout=30s")
fed = h.helicsCreateValueFederate("controller", info)
pub = h.helicsFederateRegisterGlobalPublication(fed, "coordinator/f13/setpoints", h.HELICS_DATA_TYPE_STRING, "")
h.helicsFederateEnterExecutingMode(fed)
# Step k is at HELICS time (k + 1) * step; half a step earlier the feeder has not solved it yet.
h.helicsFederateRequestTime(fed, (first_step + 1) * step - step / 2)
h.helicsPublicationPublishString(pub, json.dumps({
    "pv": {"pv_0": [0.0, -20.0], "pv_1": [0.0, 0.0]},
    "battery": {"bat_0": 40.0},
}))
h.helicsFederateRequestTime(fed, h.HELICS_TIME_MAXTIME)
h.helicsFederateDisconnect(fed)
h.helicsCloseLibrary()
"""


def test_external_controller_setpoints_are_applied(tmp_path):
    data = yaml.safe_load(SMALL.read_text())
    data["feeders"] = [{
        "name": "f13", "model": "ieee13", "bus": 6, "load_profile": "commercial",
        "pv": {"penetration": 0.3, "count": 2}, "battery": {"penetration": 0.1, "count": 1, "schedule": "idle"},
    }]
    data["coordination"] = {"scheme": "external"}
    data["coupling"] = {"mode": "loose"}
    data["time"] = {"start": "2024-07-01T10:00:00", "duration": "1h", "step": "5min"}
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump(data))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "external.h5"
    run = subprocess.Popen(
        [sys.executable, "-m", "tandem.cli", "run", str(path), "-q", "--observers", "1", "--broker-port", str(port), "-o", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )
    controller = subprocess.run([sys.executable, "-c", CONTROLLER, str(port), "300", "4"],
                                capture_output=True, text=True, timeout=120)
    _, err = run.communicate(timeout=120)
    assert controller.returncode == 0, controller.stderr
    assert run.returncode == 0, err
    assert not run_processes(tmp_path / "external_run")
    with RunFile(out) as result:
        dispatch = result.read("devices/f13/battery_dispatch_kw")[:, 0]
        pv, available, q = (result.read(f"feeders/{k}")[:, 0] for k in ("pv_kw", "pv_available_kw", "pv_kvar"))
    np.testing.assert_array_equal(dispatch[:4], 0.0)  # idle until the set-point arrives
    np.testing.assert_allclose(dispatch[4:], 40.0)  # then discharging as told (within rating and SOC)
    assert np.all(pv[:4] > 0.5 * available[:4]) and np.all(available[4:] > 0)
    np.testing.assert_allclose(pv[4:], 0.0, atol=1e-3)  # both PV curtailed to zero
    np.testing.assert_allclose(q[4:], -20.0, rtol=1e-3)  # pv_0 absorbs 20 kvar


def test_setpoints_for_unknown_ders_are_rejected():
    from grid.feeder import build_feeder
    from grid.setpoints import Setpoints
    from scenario.schema import load_scenario

    scenario = load_scenario(SMALL, {"feeders": [{"name": "f13", "model": "ieee13", "bus": 6,
                                                  "battery": {"penetration": 0.1, "count": 1}}]})
    fleet = build_feeder(scenario.feeders[0], scenario).fleet
    with pytest.raises(KeyError, match="unknown DER 'bat_9'"):
        fleet.set_setpoints(Setpoints(battery={"bat_9": 1.0}))
    fleet.set_setpoints(Setpoints.from_json('{"battery": {"bat_0": null}}'))  # null hands the battery back to its schedule
    assert fleet.batteries[0].setpoint_kw is None


def test_setpoints_message_round_trips_and_keeps_the_external_shape():
    """The JSON an external coordinator sends is the model's wire form; the kinds still to come
    (dg, flexible_load) are accepted, and a misspelt part is refused, not ignored."""
    from pydantic import ValidationError

    from grid.setpoints import Setpoints

    text = '{"pv": {"pv_0": [0.5, -20.0]}, "battery": {"bat_0": 40.0, "bat_1": [10, 2.5], "bat_2": null}, "ev": {"ev_0": 7}}'
    message = Setpoints.from_json(text)
    assert message.battery == {"bat_0": 40.0, "bat_1": (10.0, 2.5), "bat_2": None}
    assert json.loads(message.to_json()) == json.loads(text)
    assert Setpoints.from_json(message.to_json()) == message
    later = Setpoints.from_json('{"dg": {"dg_0": [100.0, 0.0]}, "flexible_load": {"fl_0": -5.0}}')
    assert later.dg == {"dg_0": (100.0, 0.0)} and later.to_dict() == {"dg": {"dg_0": [100.0, 0.0]}, "flexible_load": {"fl_0": -5.0}}
    with pytest.raises(ValidationError):
        Setpoints.from_json('{"batteries": {"bat_0": 1.0}}')


def test_journal_entries_of_older_checkpoints_are_read():
    """Checkpoints written before the Setpoints model kept DerFleet's keyword form."""
    from grid.setpoints import Setpoints

    old = {"pv": {"pv_0": [0.4, 1.0]}, "batteries": {"bat_0": 3.0, "bat_1": None}, "battery_kvar": {"bat_0": -1.0}, "evs": {"ev_0": 2.0}}
    assert Setpoints.from_journal(old) == Setpoints(pv={"pv_0": (0.4, 1.0)}, battery={"bat_0": (3.0, -1.0), "bat_1": None}, ev={"ev_0": 2.0})
    new = Setpoints(battery={"bat_0": (3.0, -1.0)})
    assert Setpoints.from_journal(json.loads(json.dumps(new.to_dict()))) == new
