"""Distributed energy resources inside one OpenDSS feeder, driven step by step: one module
per kind (pv, battery, ev, dg, flexible_load) with its units and its controller, the local
controls (controls), placement, the kinds table (registry) and the fleet that drives them."""

from grid.ders.battery import BatteryUnit, time_of_day_dispatch
from grid.ders.controls import VOLT_VAR_CURVE, VOLT_WATT_CURVE
from grid.ders.ev import EVCharger, EVSession
from grid.ders.fleet import DerFleet
from grid.ders.kind import Controller, Reading
from grid.ders.placement import Connection, LoadPoint, bus_connection, choose_connections, feeder_loads
from grid.ders.pv import PVUnit
from grid.ders.registry import DEVICE_SERIES, KINDS, READINGS, TOTALS

__all__ = [
    "DEVICE_SERIES", "KINDS", "READINGS", "TOTALS", "VOLT_VAR_CURVE", "VOLT_WATT_CURVE",
    "BatteryUnit", "Connection", "Controller", "DerFleet", "EVCharger", "EVSession",
    "LoadPoint", "PVUnit", "Reading", "bus_connection", "choose_connections", "feeder_loads", "time_of_day_dispatch",
]
