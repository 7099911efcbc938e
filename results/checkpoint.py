"""Checkpoints in a results file: the state the federates need to continue a run, kept with
the rows it belongs to, and read back by `tandem run --resume`.

Layout: the group `checkpoint` with the attributes `step` (the last step whose state it
holds), `rows` (= step + 1: the rows of every time-indexed dataset that go with it) and
`written_at`, and one dataset per part of the federation holding its state as JSON text
(UTF-8 bytes, uint8, gzip-compressed): `transmission`, `feeders` ({feeder name: state})
and, with a coordinator, `coordinator`. Bytes rather than HDF5 strings, so that the space of
a replaced checkpoint is used again. A new checkpoint is written beside the last one as
`checkpoint_next` and renamed once complete, so a run killed while writing one keeps the
previous one (or, killed between the two renames, the complete new one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

CHECKPOINT = "checkpoint"
_NEXT = "checkpoint_next"


class CheckpointError(ValueError):
    """A results file that cannot be resumed; the message is one line naming the file."""


@dataclass
class Checkpoint:
    step: int  # the run continues at step + 1
    rows: int
    states: dict[str, dict]  # part -> state
    scenario_json: str
    scenario_source: str
    feeder_processes: int  # of the run so far: its timing dataset has a column for each


def write_checkpoint(file: h5py.File, step: int, states: dict[str, str]) -> None:
    """Save the parts' states (JSON strings) after `step`; the rows up to it must be written."""
    if _NEXT in file:
        del file[_NEXT]
    group = file.create_group(_NEXT)
    for part, text in states.items():
        data = np.frombuffer(text.encode(), dtype=np.uint8)
        ds = group.create_dataset(part, data=data, chunks=(max(1, min(len(data), 1 << 16)),), compression="gzip")
        ds.attrs.update(units="", dims="", description=f"JSON state (UTF-8) of the {part} federate(s) after step {step}, for --resume")
    group.attrs["written_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    group.attrs["step"] = step
    group.attrs["rows"] = step + 1  # written last: a group with `rows` is complete
    file.flush()
    if CHECKPOINT in file:
        del file[CHECKPOINT]
    file.move(_NEXT, CHECKPOINT)
    file.flush()


def _latest(file: h5py.File) -> h5py.Group | None:
    groups = [file[name] for name in (CHECKPOINT, _NEXT) if name in file and "rows" in file[name].attrs]
    return max(groups, key=lambda g: int(g.attrs["rows"]), default=None)


def checkpoint_step(file: h5py.File) -> int | None:
    """The step of an open results file's last complete checkpoint, None if it has none."""
    group = _latest(file)
    return None if group is None else int(group.attrs["step"])


def latest_checkpoint_step(path: str | Path) -> int | None:
    """The step of a file's last checkpoint, None if it has none or cannot be read."""
    try:
        with h5py.File(path, "r", locking=False) as file:
            return checkpoint_step(file)
    except (OSError, KeyError, ValueError):
        return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The last checkpoint of an unfinished run's file (raises CheckpointError)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such results file")
    try:
        with h5py.File(path, "r", locking=False) as file:
            if bool(file.attrs.get("complete", False)):
                raise CheckpointError(f"{path}: the run is complete; there is nothing to resume")
            group = _latest(file)
            if group is None:
                raise CheckpointError(f"{path}: no checkpoint to resume from (run with --checkpoint-every)")
            n_rows = file["time/seconds"].shape[0]
            rows = int(group.attrs["rows"])
            if n_rows < rows:
                raise CheckpointError(f"{path}: the checkpoint after step {rows - 1} has only {n_rows} rows written")
            states = {part: json.loads(group[part][()].tobytes().decode()) for part in group}
            return Checkpoint(int(group.attrs["step"]), rows, states, str(file.attrs["scenario"]),
                              str(file.attrs.get("scenario_source", "")), int(file["timing/feeders_opendss_s"].shape[1]))
    except CheckpointError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({str(exc).strip() or type(exc).__name__})") from None


def truncate_to_checkpoint(path: str | Path, rows: int) -> None:
    """Cut every time-indexed dataset to the checkpoint's rows (a run killed after its
    checkpoint may have written more) and mark the file unfinished again."""
    try:
        with h5py.File(path, "r+") as file:

            def cut(name: str, obj) -> None:
                if isinstance(obj, h5py.Dataset) and str(obj.attrs.get("dims", "")).startswith("time") and obj.shape[0] > rows:
                    obj.resize(rows, axis=0)

            file.visititems(cut)
            file.attrs["complete"] = False
            file.attrs["error"] = ""
            file.attrs["finished_at"] = ""
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open for writing ({str(exc).strip()}); is its run still going?") from None
