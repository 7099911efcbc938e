"""Optimisation layer of Tandem: look-ahead OPF models for coordinating T&D.

Data extraction (plain dataclasses built from pandapower and OpenDSS) is kept apart
from model building (functions that add variables, constraints and objective terms
to a pyomo Block), so every coordination scheme composes the same pieces:

* `network_data`  DC-OPF data of a pandapower net; three-phase data of an OpenDSS feeder
* `transmission`  DC-OPF (B-theta) of the transmission network over a horizon
* `distribution`  LinDist3Flow of an unbalanced radial feeder over a horizon
* `ders`          the DER kinds on feeder buses, one module each (PV, batteries, flexible
                  loads, EV chargers, gensets) with what a problem does per kind; `ders.registry`
* `interface`     boundary coupling: feeder substation power = boundary load, head voltage
* `objective`     penalty weights, the named cost terms in order, and the objective
* `options`       the settings every problem shares
* `update`        the data of a re-solve, typed (`Update`, `FeederUpdate`)
* `solver`        persistent HiGHS: solve, re-solve, read back selected values
* `problem`       the persistent-problem base: model + solver, new data, reading units, DER costs
* `centralized`   the joint T&D look-ahead problem: built once, updated and re-solved
* `dso`, `tso`    each operator's own problem: a feeder with interface roles; the DC-OPF
                  with feeders seen only through their interfaces
* `flexibility`   P-Q regions at a feeder interface by optimising in many directions
* `validation`    DER ranges a feeder absorbs in every combination (hybrid scheme)
* `proximal`      ADMM's augmented-Lagrangian term as an LP
* `agents`        the DSOs of a scheme, in this process or in worker processes
* `exchange`      the record of what crosses the TSO-DSO interface
* `schemes`       the coordination schemes with the interface of `centralized`, by name

Nothing here talks to HELICS: a coordination federate owns the time loop and messaging.
"""
