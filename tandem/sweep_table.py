"""One table of a sweep: a row per case, the swept parameters and every KPI as columns.

    from tandem.sweep_folder import SweepFolder
    from tandem.sweep_table import collect
    table = collect(SweepFolder("runs/sweeps/pv_study"))    # pandas DataFrame, index: case id

Columns: `case`, `state`, `error`, one per swept parameter (its dotted key), then the KPIs of
`tandem.kpis.kpis` (units in their names). Cases without a results file have their state and
NaN KPIs; an incomplete run's KPIs cover the steps it recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from tandem.sweep_cases import sweep_states
from tandem.sweep_folder import SweepFolder


def _cell(value):
    """Lists and mappings (a swept sub-tree) as JSON text, so every column has one type."""
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else value


def collect(folder: SweepFolder) -> pd.DataFrame:
    from tandem.kpis import kpis

    rows = []
    for state in sweep_states(folder):
        row: dict = {"case": state.id, "state": state.state, "error": state.error}
        row.update({key: _cell(value) for key, value in state.parameters.items()})
        path = folder.results(folder.case(state.id))
        if path.is_file():
            try:
                values = kpis(path)
            except (OSError, KeyError) as exc:
                row["error"] = row["error"] or f"unreadable results: {exc}"
            else:
                row.update({k: v for k, v in values.items() if not k.endswith(".note") and k not in row})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("case", drop=False)
    table.index.name = None
    return _typed(table)


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """One type per column (what Parquet needs): numbers stay numbers; a column holding any
    text becomes text, its missing cells None."""
    out = table.copy()
    for column in out.columns:
        values = out[column].tolist()
        present = [v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))]
        if present and all(isinstance(v, bool) for v in present):
            out[column] = pd.array([v if v in present else None for v in values], dtype="boolean")
        elif present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            out[column] = pd.to_numeric(pd.Series(values, index=out.index, dtype=object))
        else:
            out[column] = pd.Series([None if v not in present else str(v) for v in values], index=out.index, dtype=object)
    return out


def write_tables(table: pd.DataFrame, stem: Path) -> tuple[Path, Path]:
    """`<stem>.csv` and `<stem>.parquet`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, parquet = stem.with_suffix(".csv"), stem.with_suffix(".parquet")
    table.to_csv(csv, index=False)
    table.to_parquet(parquet, index=False)
    return csv, parquet
