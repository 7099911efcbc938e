"""Flexibility markets between the TSO and DSOs (issue #16).

* `bids`        what flexibility service providers offer: direction, quantity, price, format
* `case`        each system operator's grid as a linear map around its baseline, and the bids
* `layer`       one clearing: which bids, which grids' limits, which interfaces may move
* `clearing`    the market models (common, disjoint, fragmented, multilevel) as layers,
                interface pricing, grid-safe forwarding, the common market as a game
* `allocation`  splitting the common market's cost: Shapley, proportional, Lagrangian, Core
"""
