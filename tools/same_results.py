"""Check that a change leaves results bit-identical: run the reference studies with a git
revision and with this checkout, then compare every dataset and attribute of each pair of
HDF5 files.

    python tools/same_results.py --before HEAD~3           # runs both sides, compares
    python tools/same_results.py --compare A.h5 B.h5       # compares two files only

The studies are the default study, `runs/pv_centralized.yaml` under every coordination
scheme, `runs/ieee123_pv_week.yaml` shortened to one day and `runs/ders_dispatched.yaml`
(every DER kind) under two schemes. What a run measures of itself
(wall-clock times, solve times, dates, host names, paths) differs between any two runs and
is left out of the comparison; everything else must be equal to the bit (NaN equals NaN),
except that the resolved scenario may list options added since, with their defaults, and the
file after may hold datasets the change adds (listed, not failures).
Exit code 0 when every pair is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SCHEMES = ["none", "local", "centralized", "tso_managed", "hybrid", "dso_managed", "dso_first", "admm"]
STUDIES: dict[str, list[str]] = {
    "default": [],
    **{f"pv_centralized_{s}": ["runs/pv_centralized.yaml", "--scheme", s] for s in SCHEMES},
    "ieee123_pv_day": ["runs/ieee123_pv_week.yaml", "--duration", "1d"],
    # Every DER kind under a coordinator (gensets' and EVs' state carried from plan to plan).
    "ders_dispatched": ["runs/ders_dispatched.yaml"],
    "ders_dispatched_dso_managed": ["runs/ders_dispatched.yaml", "--scheme", "dso_managed"],
}

# Names (datasets or attributes) whose values are measurements of the run itself.
VOLATILE = ("wall", "seconds", "solve_time", "elapsed", "created", "finished", "started", "host", "path",
            "command", "run_dir", "pid", "version", "_time_s", "timing", "duration_s")


def _volatile(name: str) -> bool:
    """Wall-clock measurements: the timing/ group, anything in seconds (`*_s`), dates, hosts."""
    leaf = name.rsplit("/", 1)[-1].lower()
    return name.startswith("timing") or leaf.endswith("_s") or any(word in leaf for word in VOLATILE)


def _equal(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind == "f" or a.dtype.kind == "c":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _covers(before, after) -> bool:
    """Whether `after` holds every key of `before` with the same value (new keys allowed)."""
    if isinstance(before, dict):
        return isinstance(after, dict) and all(k in after and _covers(v, after[k]) for k, v in before.items())
    if isinstance(before, list):
        return isinstance(after, list) and len(before) == len(after) and all(map(_covers, before, after))
    return before == after


def compare_files(before: Path, after: Path, added: list[str] | None = None) -> list[str]:
    """Every difference between two results files, one line each (empty: identical). Every
    dataset of `before` must be in `after`, equal; datasets only `after` has go to `added`."""
    problems: list[str] = []
    added = [] if added is None else added
    with h5py.File(before, "r") as fa, h5py.File(after, "r") as fb:
        names_a: dict[str, h5py.HLObject] = {}
        names_b: dict[str, h5py.HLObject] = {}
        fa.visititems(lambda n, o: names_a.__setitem__(n, o))
        fb.visititems(lambda n, o: names_b.__setitem__(n, o))
        names_a[""], names_b[""] = fa, fb
        for name in sorted(set(names_a) | set(names_b)):
            if _volatile(name):
                continue
            if name not in names_b:
                problems.append(f"{name}: only in {before.name}")
                continue
            if name not in names_a:  # a dataset the change adds (a new output) compares with nothing
                added.append(name)
                continue
            oa, ob = names_a[name], names_b[name]
            if isinstance(oa, h5py.Dataset) and not _equal(oa[()], ob[()]):
                problems.append(f"{name}: values differ")
            for key in sorted(set(oa.attrs) | set(ob.attrs)):
                if _volatile(key):
                    continue
                if key not in oa.attrs or key not in ob.attrs:
                    problems.append(f"{name}@{key}: attribute only on one side")
                elif key == "scenario":  # new options appear with their defaults; the rest must be equal
                    if not _covers(json.loads(oa.attrs[key]), json.loads(ob.attrs[key])):
                        problems.append(f"{name}@{key}: scenario differs")
                elif not _equal(oa.attrs[key], ob.attrs[key]):
                    problems.append(f"{name}@{key}: attribute differs")
    return problems


def run_study(checkout: Path, args: list[str], output: Path) -> None:
    """One `tandem run` of `checkout`'s code (its folder first on the import path)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, "-m", "tandem",
               "run", *args, "-o", str(output), "-q"]
    subprocess.run(command, cwd=checkout, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV", help="git revision to compare this checkout with")
    parser.add_argument("--before-dir", metavar="DIR", help="reuse result files of the revision from DIR")
    parser.add_argument("--compare", nargs=2, metavar="H5", help="only compare two files")
    parser.add_argument("--studies", help="comma-separated subset of: " + ", ".join(STUDIES))
    args = parser.parse_args()
    if args.compare:
        added: list[str] = []
        problems = compare_files(Path(args.compare[0]), Path(args.compare[1]), added)
        print("\n".join(problems) or "identical" + (f" (added: {', '.join(added)})" if added else ""))
        return 1 if problems else 0
    if not (args.before or args.before_dir):
        parser.error("give --before REV, --before-dir DIR or --compare A B")
    names = args.studies.split(",") if args.studies else list(STUDIES)
    work = Path(tempfile.mkdtemp(prefix="same_results_"))
    before_dir = Path(args.before_dir) if args.before_dir else work / "before"
    if args.before:
        tree = work / "tree"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(tree), args.before], cwd=ROOT, check=True)
        before_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in names:
                run_study(tree, STUDIES[name], before_dir / f"{name}.h5")
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    failed = 0
    for name in names:
        after = work / f"{name}.h5"
        run_study(ROOT, STUDIES[name], after)
        added: list[str] = []
        problems = compare_files(before_dir / f"{name}.h5", after, added)
        print(f"{name}: " + ("identical" if not problems else f"{len(problems)} differences")
              + (f" (added: {', '.join(added)})" if added else ""))
        for line in problems[:20]:
            print("   ", line)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
