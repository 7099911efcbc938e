"""The recorder's writing cost: ResultsWriter appending rows shaped like a study's file, flushed
every `--rows-per-flush` rows (the recorder flushes once a second: ~35 rows at the small study's
speed on a busy machine, ~100-150 on a quiet one), plus `finish` (which compacts a complete file).
CPU time of this process, best of `--repeat`, so that other load on the machine counts little.

    python benchmarks/results_writer.py LAYOUT.h5 [--rows 2000] [--rows-per-flush 50] [--repeat 3]

LAYOUT.h5 is any complete run's file: its time series' shapes are copied. With PYTHONPATH
pointing at another checkout, that checkout's writer is measured (before/after a change).

Issue #14 (crash-safe writing: uncompressed rows during the run, no chunk cache, no reuse of
freed space, compaction at the end), small study's layout (48 time series), 2000 rows:
see docs/results.md, "What a killed run leaves", for the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from results.store import ResultsWriter, Series


def layout(path: Path) -> list[Series]:
    found: list[Series] = []
    with h5py.File(path, "r") as f:
        def keep(name: str, obj) -> None:
            dims = str(obj.attrs.get("dims", "")) if isinstance(obj, h5py.Dataset) else ""
            if dims.startswith("time") and name != "time/seconds":
                found.append(Series(name, obj.shape[1:], "", tuple(dims.split(",")[1:]), "", str(obj.dtype)))
        f.visititems(keep)
    return found


def measure(series: list[Series], rows: int, per_flush: int, folder: Path) -> tuple[float, float, int]:
    """CPU seconds for the rows, for finish, and the file's size."""
    path = folder / f"w{time.perf_counter_ns()}.h5"
    writer = ResultsWriter(path, "{}", "", rows, flush_seconds=1e9, block_rows=per_flush)
    for s in series:
        writer.add_series(s)
    rng = np.random.default_rng(0)
    values = [{s.path: rng.random(s.shape).astype(s.dtype) for s in series} for _ in range(16)]  # realistic entropy
    started = time.process_time()
    for k in range(rows):
        writer.append(k * 300.0, values[k % 16])
    written = time.process_time()
    writer.finish(complete=True)
    finished = time.process_time()
    size = path.stat().st_size
    path.unlink()
    return written - started, finished - written, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("layout", type=Path)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--rows-per-flush", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    series = layout(args.layout)
    with tempfile.TemporaryDirectory() as folder:
        runs = [measure(series, args.rows, args.rows_per_flush, Path(folder)) for _ in range(args.repeat)]
    rows_s = min(r[0] for r in runs)
    finish_s = min(r[1] for r in runs)
    print(f"{len(series)} series, {args.rows} rows, a flush every {args.rows_per_flush}: "
          f"{1e3 * rows_s / args.rows:.3f} ms CPU a row, finish {finish_s:.3f} s, file {runs[0][2] / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
