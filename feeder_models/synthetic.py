"""Synthetic unbalanced radial distribution feeders of any size (50 .. 2000+ buses).

`write_synthetic_feeder` writes an OpenDSS model in the style of the bundled
IEEE feeders (``master.dss`` + redirected files, relative redirects only, no
``Solve``) so that feeder counts and sizes can be scaled freely in studies.

How a feeder is built (all random draws from ``random.Random(seed)``):

* **Topology.** A seeded random tree, grown in layers: a three-phase main trunk
  leaving the feeder head; three-phase laterals attached to trunk buses by
  preferential attachment (a trunk bus that already has laterals is more likely
  to get another, giving junction poles); two-phase laterals off three-phase
  buses; single-phase laterals and taps off any multi-phase bus, preferring
  lateral buses. Inside a lateral each new bus extends the lateral's tip with
  probability 0.7, otherwise it starts a sub-branch. Section lengths are
  log-normal; their median shrinks along the trunk and with the depth inside a
  lateral. About 45-55 % of the buses are single-phase and 8-14 % two-phase.
  Buses are ``b0001`` (the regulated feeder head) .. ``bNNNN``; with the
  substation's low-voltage bus ``subst_lv`` the circuit has exactly
  ``n_buses`` buses besides the 115 kV ``sourcebus``.
* **Line codes.** Phase impedance matrices (ohm/km, with mutual terms) and
  shunt capacitance matrices (nF/km), computed here from conductor data
  (Kersting, *Distribution System Modeling and Analysis*, Appendix A) with the
  modified Carson equations (60 Hz, 100 ohm-m earth) and Kron reduction of the
  multigrounded neutral; overhead ACSR on a typical 8 ft crossarm, and
  concentric-neutral aluminium cables for some underground laterals. Each
  section gets the smallest conductor of its class whose normal ampacity
  covers its peak phase current with margin (trunk loaded to at most 60 %),
  never larger than its upstream section, so sizes decrease away from the
  substation. Overhead ampacities are the published bare-conductor ratings,
  cable ampacities typical duct values; emergency ratings are 1.3x / 1.2x.
* **Loads.** Constant-PQ (``model=1``, ``vminpu=0.85``) wye loads: single-phase
  loads on most lateral buses and some three-phase (commercial) loads on
  three-phase buses. kW are log-normal, power factors uniform in 0.90-0.98.
  The single-phase loads of each phase are then scaled so that the largest
  deviation of a phase total from the mean is a seeded 5-12 %, and all loads
  so that their sum is ``peak_load_kw`` (default 5 kW per bus, at most 10 MW at
  12.47 kV, scaled with kV squared).
* **Substation and voltage control.** 115 kV delta / ``kv_ll`` grounded-wye
  transformer sized for the peak (about 70 % loading, 6-8 % impedance); a
  bank of three single-phase regulators (Transformer + RegControl, 32 steps of
  5/8 %) at the feeder head with line-drop compensation. Its R/X settings come
  from an internal backward/forward-sweep power flow at peak load, so that each
  phase holds its lowest feeder voltage near 118 V on a 120 V base (0.983 pu)
  with the head voltage limited to 126 V (1.05 pu). Feeders over 1.5 MW get
  fixed three-phase capacitor banks on the trunk (about 40 % of peak kvar).
  If the sweep finds too large a voltage drop, trunk conductors are enlarged.

Limits: the feeder is synthetic, not a real feeder and not statistically
validated against utility data. Loads sit on the primary buses (no service
transformers or secondaries); there are no switches, ties, protection, DER or
load shapes; the source is practically stiff (the co-simulation drives it).
Voltages are only designed for the default (or a similar) peak load; a much
larger ``peak_load_kw`` gives correspondingly large drops and overloads.
"""

from __future__ import annotations

import cmath
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["write_synthetic_feeder"]

# ----------------------------------------------------------------------------
# Conductor data and line constants
# ----------------------------------------------------------------------------

_MILE_KM = 1.609344
_FREQ = 60.0


@dataclass(frozen=True)
class _Conductor:
    name: str
    kcmil: float  # size, only used to order conductors
    r_ohm_mi: float  # AC resistance at 50 C
    gmr_ft: float
    diam_in: float
    amps: float  # ampacity (bare conductor rating for ACSR)


# Kersting, Appendix A (ACSR and AA conductors, copper neutral strands).
_ACSR = {
    "795": _Conductor("795 kcmil ACSR 26/7", 795.0, 0.117, 0.0375, 1.108, 900),
    "556": _Conductor("556.5 kcmil ACSR 26/7", 556.5, 0.1859, 0.0313, 0.927, 730),
    "336": _Conductor("336.4 kcmil ACSR 26/7", 336.4, 0.306, 0.0244, 0.721, 530),
    "4_0": _Conductor("4/0 ACSR 6/1", 211.6, 0.592, 0.00814, 0.563, 340),
    "1_0": _Conductor("1/0 ACSR 6/1", 105.6, 1.12, 0.00446, 0.398, 230),
    "2": _Conductor("#2 ACSR 6/1", 66.4, 1.69, 0.00418, 0.316, 180),
    "4": _Conductor("#4 ACSR 6/1", 41.7, 2.55, 0.00452, 0.257, 140),
}
_AA = {
    "500": _Conductor("500 kcmil AA 37 strand", 500.0, 0.206, 0.0260, 0.813, 0),
    "250": _Conductor("250 kcmil AA 37 strand", 250.0, 0.410, 0.0171, 0.567, 0),
    "1_0": _Conductor("1/0 AA 19 strand", 105.6, 0.970, 0.0111, 0.368, 0),
}
_CU14 = _Conductor("#14 Cu strand", 4.1, 14.8722, 0.00208, 0.0641, 0)
_CU12 = _Conductor("#12 Cu strand", 6.5, 9.3528, 0.00262, 0.0808, 0)

# Overhead geometry (feet): 8 ft crossarm at 28 ft with the neutral 4 ft below
# (Kersting's spacing ID 500); two-phase and single-phase construction.
_OH3_POS = [(0.0, 28.0), (2.5, 28.0), (7.0, 28.0)]
_OH2_POS = [(0.0, 28.0), (7.0, 28.0)]
_OH1_POS = [(0.5, 29.0)]
_OH_NEUTRAL_POS = (4.0, 24.0)
_OH1_NEUTRAL_POS = (0.0, 24.0)


def _self_z(r_ohm_mi: float, gmr_ft: float) -> complex:
    """Modified Carson self impedance (ohm/mile, 60 Hz, 100 ohm-m earth)."""
    return complex(r_ohm_mi + 0.09530, 0.12134 * (math.log(1.0 / gmr_ft) + 7.93402))


def _mutual_z(d_ft: float) -> complex:
    return complex(0.09530, 0.12134 * (math.log(1.0 / d_ft) + 7.93402))


def _invert(m: list[list]) -> list[list]:
    """Gauss-Jordan inverse of a small (real or complex) matrix."""
    n = len(m)
    a = [list(row) + [1.0 if i == j else 0.0 for j in range(n)] for i, row in enumerate(m)]
    for c in range(n):
        p = max(range(c, n), key=lambda i: abs(a[i][c]))
        a[c], a[p] = a[p], a[c]
        pivot = a[c][c]
        a[c] = [x / pivot for x in a[c]]
        for i in range(n):
            if i != c and a[i][c] != 0:
                f = a[i][c]
                a[i] = [x - f * y for x, y in zip(a[i], a[c])]
    return [row[n:] for row in a]


def _kron(m: list[list], nph: int) -> list[list]:
    """Kron reduction: eliminate the rows/columns after the first ``nph`` (grounded neutrals)."""
    nn = len(m) - nph
    d_inv = _invert([row[nph:] for row in m[nph:]])
    out = []
    for i in range(nph):
        row = []
        for j in range(nph):
            s = m[i][j]
            for k in range(nn):
                for l in range(nn):
                    s -= m[i][nph + k] * d_inv[k][l] * m[nph + l][j]
            row.append(s)
        out.append(row)
    return out


def _overhead(phase: _Conductor, neutral: _Conductor, pos, npos):
    """Phase impedance (ohm/km) and capacitance (nF/km) matrices of an overhead line."""
    conds = [phase] * len(pos) + [neutral]
    allpos = list(pos) + [npos]
    n = len(allpos)
    z = [[_self_z(conds[i].r_ohm_mi, conds[i].gmr_ft) if i == j else _mutual_z(math.dist(allpos[i], allpos[j]))
          for j in range(n)] for i in range(n)]
    # Potential coefficients (mile/uF) with the conductor images below ground.
    p = []
    for i in range(n):
        row = []
        for j in range(n):
            if i == j:
                row.append(11.17689 * math.log(2.0 * allpos[i][1] / (conds[i].diam_in / 24.0)))
            else:
                image = (allpos[j][0], -allpos[j][1])
                row.append(11.17689 * math.log(math.dist(allpos[i], image) / math.dist(allpos[i], allpos[j])))
        p.append(row)
    zp = _kron(z, len(pos))
    c_uf_mi = _invert(_kron(p, len(pos)))
    return ([[x / _MILE_KM for x in row] for row in zp],
            [[x * 1000.0 / _MILE_KM for x in row] for row in c_uf_mi])


def _concentric_neutral(phase: _Conductor, strand: _Conductor, k: int, d_od_in: float, spacing_ft: list[float]):
    """Impedance (ohm/km) and capacitance (nF/km) of concentric-neutral cables (Kersting 4.2, 5.4).

    ``spacing_ft`` are the cable centre positions along a line (cables side by side).
    """
    m = len(spacing_ft)
    radius = (d_od_in - strand.diam_in) / 24.0  # ft, circle through the neutral strands
    gmr_cn = (strand.gmr_ft * k * radius ** (k - 1)) ** (1.0 / k)
    r_cn = strand.r_ohm_mi / k
    n = 2 * m
    z = [[0j] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            ci, cj = i % m, j % m
            i_neutral, j_neutral = i >= m, j >= m
            if i == j:
                z[i][j] = _self_z(r_cn, gmr_cn) if i_neutral else _self_z(phase.r_ohm_mi, phase.gmr_ft)
            elif ci == cj:  # phase conductor and its own neutral
                z[i][j] = _mutual_z(radius)
            else:
                d = abs(spacing_ft[ci] - spacing_ft[cj])
                if i_neutral and j_neutral:
                    z[i][j] = _mutual_z(d)
                elif i_neutral or j_neutral:  # phase to another cable's neutral
                    z[i][j] = _mutual_z((d ** k - radius ** k) ** (1.0 / k))
                else:
                    z[i][j] = _mutual_z(d)
    zp = _kron(z, m)
    y_us_mi = 77.3619 / (math.log(radius / (phase.diam_in / 24.0)) - math.log(k * (strand.diam_in / 24.0) / radius) / k)
    c_nf_km = y_us_mi / (2 * math.pi * _FREQ) * 1000.0 / _MILE_KM
    c = [[c_nf_km if i == j else 0.0 for j in range(m)] for i in range(m)]
    return [[x / _MILE_KM for x in row] for row in zp], c


@dataclass(frozen=True)
class _LineCode:
    name: str
    nphases: int
    underground: bool
    size: float  # phase conductor size (kcmil), orders codes for "decreasing away from the substation"
    normamps: float
    emergamps: float
    comment: str
    z: tuple  # ohm/km
    c: tuple  # nF/km


def _line_codes() -> dict[str, _LineCode]:
    codes: dict[str, _LineCode] = {}

    def add(name, nph, ug, cond, amps, emerg_factor, comment, zc):
        z, c = zc
        codes[name] = _LineCode(name, nph, ug, cond.kcmil, amps, round(amps * emerg_factor),
                                comment, tuple(map(tuple, z)), tuple(map(tuple, c)))

    neutral_for = {"795": "336", "556": "4_0", "336": "4_0", "4_0": "1_0", "1_0": "1_0", "2": "2", "4": "4"}
    for key in ("795", "556", "336", "4_0", "1_0"):
        ph, nt = _ACSR[key], _ACSR[neutral_for[key]]
        add(f"oh3_{key}", 3, False, ph, ph.amps, 1.3, f"overhead 3-phase, {ph.name} phases, {nt.name} neutral",
            _overhead(ph, nt, _OH3_POS, _OH_NEUTRAL_POS))
    for key in ("1_0", "2"):
        ph, nt = _ACSR[key], _ACSR[neutral_for[key]]
        add(f"oh2_{key}", 2, False, ph, ph.amps, 1.3, f"overhead 2-phase, {ph.name} phases, {nt.name} neutral",
            _overhead(ph, nt, _OH2_POS, _OH_NEUTRAL_POS))
    for key in ("1_0", "2", "4"):
        ph, nt = _ACSR[key], _ACSR[neutral_for[key]]
        add(f"oh1_{key}", 1, False, ph, ph.amps, 1.3, f"overhead 1-phase, {ph.name} phase, {nt.name} neutral",
            _overhead(ph, nt, _OH1_POS, _OH1_NEUTRAL_POS))
    three = [0.0, 0.5, 1.0]  # three cables side by side, 6 in apart
    add("ug3_500", 3, True, _AA["500"], 385, 1.2, "underground 3-phase, 500 kcmil AA, 1/3 neutral 16 x #12 Cu, 15 kV",
        _concentric_neutral(_AA["500"], _CU12, 16, 1.52, three))
    add("ug3_250", 3, True, _AA["250"], 260, 1.2, "underground 3-phase, 250 kcmil AA, 1/3 neutral 13 x #14 Cu, 15 kV",
        _concentric_neutral(_AA["250"], _CU14, 13, 1.29, three))
    add("ug1_1_0", 1, True, _AA["1_0"], 170, 1.2, "underground 1-phase, 1/0 AA, full neutral 16 x #14 Cu, 15 kV",
        _concentric_neutral(_AA["1_0"], _CU14, 16, 1.06, [0.0]))
    return codes


_CODES = _line_codes()

# Candidate codes per class, smallest first.
_CLASS_CODES = {
    (3, False): ["oh3_1_0", "oh3_4_0", "oh3_336", "oh3_556", "oh3_795"],
    (2, False): ["oh2_2", "oh2_1_0"],
    (1, False): ["oh1_4", "oh1_2", "oh1_1_0"],
    (3, True): ["ug3_250", "ug3_500"],
    (1, True): ["ug1_1_0"],
}

# ----------------------------------------------------------------------------
# Feeder construction
# ----------------------------------------------------------------------------

_DEFAULT_KW_PER_BUS = 5.0
_MAX_DEFAULT_PEAK_KW_AT_12KV = 10_000.0
_VREG_V = 118.0  # LDC target on a 120 V base for the lowest voltage of each phase at peak
_BAND_V = 2.0
_VLIMIT_V = 126.0
_MAX_DROP = 0.06  # design limit of the feeder voltage drop at peak (pu), trunk grows beyond it
_SUBST_SIZES_KVA = [1500, 2500, 3750, 5000, 7500, 10000, 12000, 15000, 20000, 25000, 30000]
_CT_RATINGS = [50, 100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200, 1600]
_CAP_BANKS_KVAR = [300, 450, 600, 900, 1200]
_PHASE_LETTERS = "abc"


@dataclass
class _Bus:
    idx: int
    parent: int  # -1 for the head
    phases: tuple[int, ...]  # OpenDSS phase numbers 1..3
    kind: str  # head, trunk, lat3, lat2, lat1
    order: tuple[int, ...] = ()  # phase on each conductor position of the line code (phasing)
    underground: bool = False
    depth: int = 0  # position inside its lateral (trunk: position along the trunk)
    length_m: float = 0.0
    children: list[int] = field(default_factory=list)
    loads: list[tuple[tuple[int, ...], float, float]] = field(default_factory=list)  # (phases, kW, pf)
    code: str = ""
    cap_kvar: float = 0.0


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(sigma * rng.gauss(0.0, 1.0))


class _Builder:
    def __init__(self, n_buses: int, seed: int, kv_ll: float, peak_kw: float):
        self.rng = random.Random(seed)
        self.n_buses = n_buses
        self.kv_ll = kv_ll
        self.v_ln = kv_ll / math.sqrt(3.0)
        self.peak_kw = peak_kw
        self.buses: list[_Bus] = []

    # -- topology -------------------------------------------------------------
    def add(self, parent: int, phases, kind: str, underground=False, depth=0, order=None) -> int:
        b = _Bus(len(self.buses), parent, tuple(sorted(phases)), kind, tuple(order or phases), underground, depth)
        self.buses.append(b)
        if parent >= 0:
            self.buses[parent].children.append(b.idx)
        return b.idx

    def _sizes(self, total: int, mean: float, lo: int, hi: int) -> list[int]:
        """Split ``total`` buses into laterals of geometric-like sizes."""
        sizes = []
        while total > 0:
            s = min(total, max(lo, min(hi, 1 + int(self.rng.expovariate(1.0 / max(mean - 1, 0.5))))))
            sizes.append(s)
            total -= s
        return sizes

    def _grow_lateral(self, first_parent: int, size: int, phases, kind: str, underground: bool) -> list[int]:
        # Phasing: which phase hangs in which crossarm position (or cable) is random per lateral.
        phases = list(phases)
        if len(phases) == 3:
            k = self.rng.randrange(3)
            phases = phases[k:] + phases[:k]
        elif len(phases) == 2 and self.rng.random() < 0.5:
            phases.reverse()
        members: list[int] = []
        depth_of: dict[int, int] = {}
        for _ in range(size):
            if not members:
                parent, depth = first_parent, 0
            elif self.rng.random() < 0.7:
                parent = members[-1]
                depth = depth_of[parent] + 1
            else:
                parent = self.rng.choice(members)
                depth = depth_of[parent] + 1
            idx = self.add(parent, phases, kind, underground, depth, order=phases)
            depth_of[idx] = depth
            members.append(idx)
        return members

    def build_topology(self) -> None:
        rng = self.rng
        n_tree = self.n_buses - 1  # plus subst_lv
        share1 = rng.uniform(0.45, 0.55)
        share2 = rng.uniform(0.08, 0.14)
        n1 = round(share1 * self.n_buses)
        n2 = round(share2 * self.n_buses)
        n3 = n_tree - n1 - n2  # includes the head
        n_trunk = max(3, round((n3 - 1) * rng.uniform(0.35, 0.5)))
        n_lat3 = n3 - 1 - n_trunk

        head = self.add(-1, (1, 2, 3), "head")
        trunk = []
        prev = head
        for i in range(n_trunk):
            prev = self.add(prev, (1, 2, 3), "trunk", depth=i)
            trunk.append(prev)
        self.trunk = trunk

        # Three-phase laterals: preferential attachment along the trunk.
        attached = {t: 0 for t in trunk}
        three_phase = list(trunk)
        for size in self._sizes(n_lat3, 6.0, 1, 40):
            weights = [1.0 + 2.0 * attached[t] for t in trunk]
            root = rng.choices(trunk, weights)[0]
            attached[root] += 1
            ug = rng.random() < 0.15
            three_phase += self._grow_lateral(root, size, (1, 2, 3), "lat3", ug)

        # Two-phase laterals off three-phase buses (lateral buses preferred).
        multi = list(three_phase)
        pairs = [(1, 2), (2, 3), (1, 3)]
        pair_w = [rng.uniform(0.5, 1.5) for _ in pairs]
        for size in self._sizes(n2, 4.0, 1, 15):
            cand_w = [2.0 if self.buses[b].kind == "lat3" else 1.0 for b in three_phase]
            root = rng.choices(three_phase, cand_w)[0]
            multi += self._grow_lateral(root, size, rng.choices(pairs, pair_w)[0], "lat2", False)

        # Single-phase laterals and taps off any multi-phase bus except the head.
        # Their phase: random, but steered towards equal bus counts (weight 1 / (1 + buses so far)).
        phase_w = [rng.uniform(0.7, 1.3) for _ in range(3)]
        on_phase = [0, 0, 0]
        fanout = {b: 0 for b in multi}
        for size in self._sizes(n1, 3.0, 1, 12):
            cand_w = [(1.0 if self.buses[b].kind == "trunk" else 2.5) / (1.0 + fanout[b]) for b in multi]
            root = rng.choices(multi, cand_w)[0]
            fanout[root] += 1
            ph = self.buses[root].phases
            phase = rng.choices(ph, [phase_w[p - 1] / (1.0 + on_phase[p - 1]) for p in ph])[0]
            on_phase[phase - 1] += size
            ug = self.buses[root].underground or rng.random() < 0.15
            self._grow_lateral(root, size, (phase,), "lat1", ug)

    # -- section lengths ------------------------------------------------------
    def assign_lengths(self) -> None:
        rng = self.rng
        kv_scale = min(2.0, max(0.4, self.kv_ll / 12.47))
        trunk_km = 1.0 * (self.n_buses / 50.0) ** 0.4 * kv_scale
        nt = len(self.trunk)
        # Trunk sections shrink linearly to half their initial median along the trunk.
        first = 1000.0 * trunk_km / (nt * 0.75)
        medians = {"lat3": 110.0 * kv_scale, "lat2": 90.0 * kv_scale, "lat1": 60.0 * kv_scale}
        for b in self.buses[1:]:
            if b.kind == "trunk":
                median = first * (1.0 - 0.5 * b.depth / max(1, nt - 1))
                sigma = 0.3
            else:
                median = medians[b.kind] * 0.92 ** min(b.depth, 10)
                sigma = 0.45
            b.length_m = round(min(3.0 * median, max(10.0, _lognormal(rng, median, sigma))), 1)
        # The trunk is transposed twice (a full cycle of phase positions over its length).
        total = sum(self.buses[t].length_m for t in self.trunk)
        run = 0.0
        for t in self.trunk:
            k = min(2, int(3.0 * (run + 0.5 * self.buses[t].length_m) / total))
            self.buses[t].order = (1, 2, 3)[k:] + (1, 2, 3)[:k]
            run += self.buses[t].length_m

    # -- loads ----------------------------------------------------------------
    def assign_loads(self) -> None:
        rng = self.rng
        for b in self.buses[1:]:
            leaf = not b.children
            if b.kind == "lat1":
                p_load = 0.95 if leaf else 0.85
            elif b.kind == "lat2":
                p_load = 0.75
            elif b.kind == "lat3":
                p_load = 0.6
            else:
                p_load = 0.3
            if rng.random() >= p_load:
                continue
            pf = round(rng.uniform(0.90, 0.98), 3)
            three = len(b.phases) == 3 and rng.random() < (0.35 if b.kind == "lat3" else 0.7)
            if three:
                b.loads.append(((1, 2, 3), _lognormal(rng, 5.0, 0.6), pf))
            else:
                b.loads.append(((rng.choice(b.phases),), _lognormal(rng, 1.0, 0.6), pf))
        if not any(b.loads for b in self.buses):  # degenerate tiny feeder
            self.buses[-1].loads.append(((self.buses[-1].phases[0],), 1.0, 0.95))

        # Every phase needs some single-phase load for the unbalance scaling below.
        for p in (1, 2, 3):
            if not any(ph == (p,) for b in self.buses for ph, _, _ in b.loads):
                host = rng.choice([b for b in self.buses[1:] if p in b.phases])
                host.loads.append(((p,), _lognormal(rng, 1.0, 0.6), round(rng.uniform(0.90, 0.98), 3)))

        # Unbalance: scale the single-phase loads of each phase to a seeded target share.
        d = rng.uniform(0.05, 0.12)
        s = rng.uniform(0.0, d)
        dev = [d, -d + s, -s]
        rng.shuffle(dev)
        three_kw = sum(kw for b in self.buses for ph, kw, _ in b.loads if len(ph) == 3)
        single_kw = [sum(kw for b in self.buses for ph, kw, _ in b.loads if ph == (p,)) for p in (1, 2, 3)]
        total = three_kw + sum(single_kw)
        factors = []
        for p in range(3):
            target = total / 3.0 * (1.0 + dev[p]) - three_kw / 3.0
            factors.append(target / single_kw[p] if single_kw[p] > 0 and target > 0 else 1.0)
        scaled_total = 0.0
        for b in self.buses:
            b.loads = [(ph, kw * (factors[ph[0] - 1] if len(ph) == 1 else 1.0), pf) for ph, kw, pf in b.loads]
            scaled_total += sum(kw for _, kw, _ in b.loads)
        scale = self.peak_kw / scaled_total
        for b in self.buses:
            b.loads = [(ph, kw * scale, pf) for ph, kw, pf in b.loads]

    # -- downstream quantities and conductors ---------------------------------
    def downstream_kva(self) -> list[list[float]]:
        """Peak kVA per phase (index 0..2) flowing through the section into each bus."""
        kva = [[0.0, 0.0, 0.0] for _ in self.buses]
        for b in reversed(self.buses):
            for ph, kw, pf in b.loads:
                for p in ph:
                    kva[b.idx][p - 1] += kw / pf / len(ph)
            if b.parent >= 0:
                for p in range(3):
                    kva[b.parent][p] += kva[b.idx][p]
        return kva

    def assign_conductors(self, trunk_loading: float) -> None:
        kva = self.downstream_kva()
        for b in self.buses[1:]:
            amps = max(kva[b.idx]) / self.v_ln
            loading = trunk_loading if b.kind == "trunk" else 0.8
            cls = _CLASS_CODES[(len(b.phases), b.underground)] if (len(b.phases), b.underground) in _CLASS_CODES \
                else _CLASS_CODES[(len(b.phases), False)]
            if b.kind == "trunk" and not b.underground:
                cls = cls[1:]  # trunk at least 4/0
            choice = next((c for c in cls if _CODES[c].normamps * loading >= amps), cls[-1])
            parent = self.buses[b.parent]
            if parent.code:
                cap = _CODES[parent.code]
                # Never larger than the section upstream: take the largest fitting code if needed.
                if _CODES[choice].size > cap.size or _CODES[choice].normamps > cap.normamps:
                    smaller = [c for c in cls if _CODES[c].size <= cap.size and _CODES[c].normamps <= cap.normamps]
                    if smaller and _CODES[smaller[-1]].normamps >= amps:
                        choice = smaller[-1]
                    elif b.underground:  # cable would be larger than the overhead line it hangs off
                        b.underground = False
                        ocls = _CLASS_CODES[(len(b.phases), False)]
                        fits = [c for c in ocls if _CODES[c].size <= cap.size and _CODES[c].normamps >= amps]
                        choice = fits[0] if fits else ocls[0]
            b.code = choice

    # -- capacitors -----------------------------------------------------------
    def assign_capacitors(self) -> None:
        for b in self.buses:
            b.cap_kvar = 0.0
        if self.peak_kw < 1500.0:
            return
        peak_kvar = sum(kw * math.tan(math.acos(pf)) for b in self.buses for _, kw, pf in b.loads)
        target = 0.4 * peak_kvar
        n_banks = max(1, math.ceil(target / _CAP_BANKS_KVAR[-1]))
        per_bank = min(_CAP_BANKS_KVAR, key=lambda k: abs(k - target / n_banks))
        nt = len(self.trunk)
        for k in range(1, n_banks + 1):
            pos = min(nt - 1, round(nt * 2 * k / (2 * n_banks + 1)))
            self.buses[self.trunk[pos]].cap_kvar += per_bank

    # -- estimate of the peak power flow ---------------------------------------
    def sweep(self, iterations: int = 6):
        """Backward/forward sweep at peak with 1.0 pu at the head; returns per-bus phase voltages and head currents."""
        a = cmath.exp(2j * math.pi / 3)
        v_nom = [self.v_ln * 1000.0 * x for x in (1.0, a * a, a)]
        volts = [[v_nom[p - 1] if p in b.phases else 0j for p in (1, 2, 3)] for b in self.buses]
        zsec = []
        for b in self.buses:
            if b.parent < 0:
                zsec.append(None)
                continue
            z = _CODES[b.code].z
            zsec.append([[z[i][j] * b.length_m / 1000.0 for j in range(len(b.phases))] for i in range(len(b.phases))])
        for _ in range(iterations):
            cur = [[0j, 0j, 0j] for _ in self.buses]
            for b in reversed(self.buses):
                c = cur[b.idx]
                for ph, kw, pf in b.loads:
                    s = kw * 1000.0 / len(ph) * complex(1.0, math.tan(math.acos(pf)))
                    for p in ph:
                        c[p - 1] += (s / volts[b.idx][p - 1]).conjugate()
                if b.cap_kvar:
                    y = 1j * b.cap_kvar * 1000.0 / 3.0 / (self.v_ln * 1000.0) ** 2
                    for p in range(3):
                        c[p] += y * volts[b.idx][p]
                if b.parent >= 0:
                    for p in b.phases:
                        cur[b.parent][p - 1] += c[p - 1]
            for b in self.buses[1:]:
                z = zsec[b.idx]
                for i, p in enumerate(b.order):
                    drop = sum(z[i][j] * cur[b.idx][q - 1] for j, q in enumerate(b.order))
                    volts[b.idx][p - 1] = volts[b.parent][p - 1] - drop
        return volts, cur[0], v_nom

    def design(self) -> None:
        self.build_topology()
        self.assign_lengths()
        self.assign_loads()
        self.assign_capacitors()
        for loading in (0.6, 0.45, 0.3, 0.2, 0.1):
            for b in self.buses:
                b.code = ""
            self.assign_conductors(loading)
            volts, head_i, v_nom = self.sweep()
            drop = max(1.0 - abs(v[p - 1]) / abs(v_nom[p - 1]) for b, v in zip(self.buses, volts) for p in b.phases)
            if drop <= _MAX_DROP:
                break
        self.drop = drop
        # Line-drop compensation: per phase, the impedance from the head to the lowest voltage of that phase.
        self.ldc = []
        for p in range(3):
            lowest = min((v[p] for b, v in zip(self.buses, volts) if (p + 1) in b.phases), key=abs)
            z_eq = (v_nom[p] - lowest) / head_i[p] if abs(head_i[p]) > 0 else 0j
            self.ldc.append(complex(max(0.0, z_eq.real), max(0.0, z_eq.imag)))
        self.head_amps = max(abs(i) for i in head_i)

    # -- output ----------------------------------------------------------------
    def bus_name(self, idx: int) -> str:
        return f"b{idx + 1:0{max(4, len(str(self.n_buses)))}d}"

    def node(self, idx: int, phases) -> str:
        return self.bus_name(idx) + "".join(f".{p}" for p in phases)


def _fmt(x: float, digits: int = 6) -> str:
    s = f"{x:.{digits}g}"
    return "0" if s in ("-0", "0") else s


def _matrix(rows) -> str:
    return "[" + " | ".join(" ".join(_fmt(rows[i][j]) for j in range(i + 1)) for i in range(len(rows))) + "]"


def _write(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="\n")


def write_synthetic_feeder(
    folder: str | Path,
    n_buses: int,
    *,
    seed: int = 0,
    kv_ll: float = 12.47,
    peak_load_kw: float | None = None,
    name: str = "synthetic",
) -> Path:
    """Write a synthetic unbalanced radial feeder with ``n_buses`` buses to ``folder``.

    The circuit has exactly ``n_buses`` buses besides the 115 kV source bus
    (see the module docstring for how it is built and its limits). Files:
    master.dss, linecodes.dss, lines.dss, regulators.dss, capacitors.dss,
    loads.dss. The same arguments always give byte-identical files.
    Returns the absolute path of ``master.dss``.
    """
    n_buses = int(n_buses)
    if n_buses < 20:
        raise ValueError(f"n_buses must be at least 20, got {n_buses}")
    if not 1.0 <= kv_ll <= 35.0:
        raise ValueError(f"kv_ll must be a distribution voltage (1 .. 35 kV line-to-line), got {kv_ll}")
    if not name or any(ch in name for ch in " .=[]()\"'!"):
        raise ValueError(f"invalid circuit name {name!r}")
    if peak_load_kw is None:
        peak_load_kw = min(_DEFAULT_KW_PER_BUS * n_buses, _MAX_DEFAULT_PEAK_KW_AT_12KV * (kv_ll / 12.47) ** 2)
    if not peak_load_kw > 0:
        raise ValueError(f"peak_load_kw must be positive, got {peak_load_kw}")

    fb = _Builder(n_buses, int(seed), float(kv_ll), float(peak_load_kw))
    fb.design()

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    kv = _fmt(kv_ll)
    kv_ln = _fmt(kv_ll / math.sqrt(3.0))
    buses = fb.buses
    peak_kva = sum(kw / pf for b in buses for _, kw, pf in b.loads)
    n1 = sum(1 for b in buses if len(b.phases) == 1)
    n2 = sum(1 for b in buses if len(b.phases) == 2)
    summary = (f"{n_buses} buses ({n1} single-phase, {n2} two-phase), seed {seed}, {kv} kV, "
               f"peak load {_fmt(peak_load_kw)} kW")

    # --- linecodes.dss
    lines = [
        "! Synthetic feeder: line codes. Phase impedance matrices (ohm/km) and shunt",
        "! capacitance matrices (nF/km) computed from conductor data (Kersting, Appendix A)",
        "! with the modified Carson equations (60 Hz, 100 ohm-m earth) and Kron reduction",
        "! of the multigrounded neutral. Overhead: 8 ft crossarm at 28 ft, neutral 4 ft",
        "! below. Underground: concentric-neutral cables 6 in apart. Ampacities: bare",
        "! conductor ratings (overhead), typical duct ratings (cables).",
    ]
    for code in _CODES.values():
        lines += [
            "",
            f"! {code.comment}",
            f"New LineCode.{code.name} nphases={code.nphases} units=km normamps={_fmt(code.normamps)} "
            f"emergamps={_fmt(code.emergamps)}",
            f"~ rmatrix={_matrix([[z.real for z in row] for row in code.z])}",
            f"~ xmatrix={_matrix([[z.imag for z in row] for row in code.z])}",
            f"~ cmatrix={_matrix(code.c)}",
        ]
    _write(folder / "linecodes.dss", lines)

    # --- lines.dss
    lines = [
        "! Synthetic feeder: line sections (radial tree). Each Line is named after the",
        "! bus it feeds; lengths in metres.",
    ]
    for b in buses[1:]:
        parent = buses[b.parent]
        lines.append(
            f"New Line.l{fb.bus_name(b.idx)[1:]} phases={len(b.phases)} bus1={fb.node(parent.idx, b.order)} "
            f"bus2={fb.node(b.idx, b.order)} linecode={b.code} length={_fmt(b.length_m)} units=m"
        )
    _write(folder / "lines.dss", lines)

    # --- loads.dss
    lines = [
        "! Synthetic feeder: constant-PQ wye loads at peak (the co-simulation scales them",
        "! with Solution.LoadMult). vminpu=0.85 keeps them constant-PQ under 0.95 pu.",
    ]
    for b in buses:
        for ph, kw, pf in b.loads:
            kvar = kw * math.tan(math.acos(pf))
            if len(ph) == 3:
                lname, lkv = fb.bus_name(b.idx), kv
            else:
                lname, lkv = fb.bus_name(b.idx) + _PHASE_LETTERS[ph[0] - 1], kv_ln
            lines.append(
                f"New Load.{lname} bus1={fb.node(b.idx, ph)} phases={len(ph)} conn=wye model=1 kV={lkv} "
                f"kW={kw:.3f} kvar={kvar:.3f} vminpu=0.85 vmaxpu=1.15"
            )
    _write(folder / "loads.dss", lines)

    # --- capacitors.dss
    lines = ["! Synthetic feeder: fixed grounded-wye capacitor banks on the trunk (feeders over",
             "! 1.5 MW peak get about 40 % of the peak kvar, placed at 2k/(2n+1) of the trunk)."]
    for b in buses:
        if b.cap_kvar:
            lines.append(f"New Capacitor.c{fb.bus_name(b.idx)[1:]} bus1={fb.node(b.idx, (1, 2, 3))} phases=3 "
                         f"kvar={_fmt(b.cap_kvar)} kV={kv}")
    _write(folder / "capacitors.dss", lines)

    # --- regulators.dss
    subst_kva = next((s for s in _SUBST_SIZES_KVA if s * 0.75 >= peak_kva), _SUBST_SIZES_KVA[-1])
    reg_kva = subst_kva / 3.0
    ct = next((c for c in _CT_RATINGS if c >= 1.2 * fb.head_amps), _CT_RATINGS[-1])
    ptratio = kv_ll / math.sqrt(3.0) * 1000.0 / 120.0
    lines = [
        "! Synthetic feeder: feeder-head regulator bank, three single-phase units",
        "! (subst_lv -> b0001), 32 steps of 5/8 %, each phase controlled individually.",
        f"! Line-drop compensation (R, X in volts, CT {ct} A, PT ratio {_fmt(ptratio)}) is set",
        "! from a peak-load sweep so that each phase holds its lowest voltage near",
        f"! {_fmt(_VREG_V)} V on 120 V; vlimit keeps the head at most {_fmt(_VLIMIT_V)} V.",
        f"! Estimated feeder voltage drop at peak: {_fmt(100 * fb.drop, 3)} %.",
    ]
    head = fb.bus_name(0)
    for p in range(3):
        letter = _PHASE_LETTERS[p]
        r_v = fb.ldc[p].real * ct / ptratio
        x_v = fb.ldc[p].imag * ct / ptratio
        lines.append(
            f"New Transformer.reg{letter} phases=1 windings=2 bank=reg buses=[subst_lv.{p + 1} {head}.{p + 1}] "
            f"kVs=[{kv_ln} {kv_ln}] kVAs=[{_fmt(reg_kva)} {_fmt(reg_kva)}] XHL=0.01 %LoadLoss=0.01"
        )
        lines.append(
            f"New RegControl.reg{letter} transformer=reg{letter} winding=2 vreg={_fmt(_VREG_V)} band={_fmt(_BAND_V)} "
            f"ptratio={_fmt(ptratio)} CTprim={ct} R={r_v:.2f} X={x_v:.2f} vlimit={_fmt(_VLIMIT_V)}"
        )
    _write(folder / "regulators.dss", lines)

    # --- master.dss
    xhl = 6.0 if subst_kva <= 3750 else (7.0 if subst_kva <= 7500 else 8.0)
    lines = [
        "! =============================================================================",
        f"! Tandem synthetic feeder '{name}': {summary}.",
        "! Written by feeder_models.synthetic.write_synthetic_feeder; a synthetic feeder,",
        "! not a model of a real one (see that module's docstring for its construction).",
        "!",
        "! Layout of this model:",
        "!   master.dss        circuit/source, substation transformer, voltage bases",
        "!   linecodes.dss     overhead and underground line codes (Carson's equations)",
        "!   regulators.dss    feeder-head regulator bank (subst_lv -> b0001)",
        "!   lines.dss         line sections of the radial tree",
        "!   capacitors.dss    fixed capacitor banks (may be empty)",
        "!   loads.dss         constant-PQ loads at peak",
        "!",
        "! No Solve, Clear, plotting or export command: Tandem compiles this file and",
        "! sets Vsource.source pu/angle before every solve. Redirects are relative.",
        "! =============================================================================",
        "",
        "Set DefaultBaseFrequency=60",
        "",
        "! Practically stiff 115 kV source (the co-simulation drives it). Angle=30 deg",
        "! compensates the delta/wye substation transformer so phase A of the feeder",
        "! sits at 0 deg.",
        f"New Circuit.{name} phases=3 bus1=sourcebus basekv=115 pu=1.0 angle=30",
        "~ R1=0 X1=0.0001 R0=0 X0=0.0001",
        "",
        f"! Substation transformer: {subst_kva} kVA, 115 kV delta / {kv} kV grounded wye,",
        f"! R=0.5 %, X={_fmt(xhl)} % (peak load about {_fmt(100 * peak_kva / subst_kva, 3)} % of rating).",
        f"New Transformer.substation phases=3 windings=2 XHL={_fmt(xhl)}",
        f"~ wdg=1 bus=sourcebus conn=delta kV=115 kVA={subst_kva} %R=0.25",
        f"~ wdg=2 bus=subst_lv  conn=wye   kV={kv} kVA={subst_kva} %R=0.25",
        "",
        "Redirect linecodes.dss",
        "Redirect regulators.dss",
        "Redirect lines.dss",
        "Redirect capacitors.dss",
        "Redirect loads.dss",
        "",
        "! Regulators may need several tap steps per solve.",
        "Set MaxControlIter=100",
        "",
        f"Set VoltageBases=[115, {kv}]",
        "CalcVoltageBases",
    ]
    master = folder / "master.dss"
    _write(master, lines)
    return master
