"""The wire table (federates/interfaces.py), the output catalogue (results/catalogue.py) and
the process table (federates/processes.py) are the declarations everything else reads: the
docs generated from them must match, and a field inserted moves its readers with it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from federates import interfaces
from federates.interfaces import FEEDER_DERS, FEEDER_POWER, Field, der_counts, pack_ders, unpack_ders
from federates.processes import FEDERATE_MODULES, kind_of, process_names
from grid.ders.registry import READINGS
from results.catalogue import CATALOGUE, HOW, der_datasets
from tandem import generated_docs


def test_generated_doc_tables_match_their_declarations():
    assert generated_docs.stale() == [], "run: python -m tandem.generated_docs"


def test_a_field_inserted_without_regenerating_the_docs_is_caught(monkeypatch):
    inserted = dataclasses.replace(FEEDER_POWER, fields=(*FEEDER_POWER.fields[:3], Field("p_n", "kW", "neutral"), *FEEDER_POWER.fields[3:]))
    monkeypatch.setattr(interfaces, "PUBLICATIONS", tuple(inserted if p is FEEDER_POWER else p for p in interfaces.PUBLICATIONS))
    assert generated_docs.stale() == ["docs/interfaces.md: publications"]
    ders = dataclasses.replace(FEEDER_DERS, fields=(Field("wind_kw", "kW", "Σ wind power"), *FEEDER_DERS.fields))
    monkeypatch.setattr(interfaces, "FEEDER_DERS", ders)
    assert "docs/interfaces.md: der-vector" in generated_docs.stale()


def test_readers_resolve_fields_by_name_so_an_insertion_moves_them():
    assert FEEDER_POWER.positions(["p_a", "p_b", "p_c"]) == slice(0, 3)
    assert FEEDER_POWER.positions(["p_total"]) == 3 and FEEDER_POWER.positions(["losses_kvar"]) == 9
    inserted = dataclasses.replace(FEEDER_POWER, fields=(*FEEDER_POWER.fields[:3], Field("p_n", "kW", "neutral"), *FEEDER_POWER.fields[3:]))
    assert inserted.positions(["p_total"]) == 4 and inserted.positions(["q_a", "q_b", "q_c"]) == slice(5, 8)
    assert inserted.length() == FEEDER_POWER.length() + 1
    # Fields not next to each other in order come as an index array.
    np.testing.assert_array_equal(FEEDER_POWER.positions(["p_total", "q_total"]), [3, 7])
    with pytest.raises(KeyError, match="no field 'p_x'"):
        FEEDER_POWER.positions(["p_x"])


def test_der_vector_layout_comes_from_the_table():
    meta = {"battery": ["bat_0", "bat_1"], "regulator": ["vr1"], "capacitor": [], "dg": ["dg_0"]}
    counts = der_counts(meta)
    assert counts == {"battery_soc": 2, "battery_dispatch_kw": 2, "regulator_taps": 1, "capacitor_steps": 0,
                      "dg_dispatch_kw": 1, "flexible_load_unit_shift_kw": 0}
    readings = {f.name: np.arange(1.0, 3.0) if f.per is None else np.full(counts[f.name], 7.0 + i)
                for i, f in enumerate(FEEDER_DERS.fields)}
    vector = np.array(pack_ders(readings))
    sizes = {key: len(v) for key, v in meta.items()}
    sizes["flexible_load"] = 0
    n_totals = sum(f.per is None for f in FEEDER_DERS.fields)
    assert len(vector) == FEEDER_DERS.length(sizes) == n_totals + 2 * 2 + 1 + 1
    layout = FEEDER_DERS.layout(sizes)
    unpacked = unpack_ders(vector, counts)
    for f in FEEDER_DERS.fields:
        np.testing.assert_array_equal(vector[layout[f.name]], unpacked[f.name])
    # Totals need no device counts: readers stacking them over feeders resolve them alone.
    assert FEEDER_DERS.positions(["pv_kw"]) == 1


def test_every_dataset_names_a_declared_source_and_fields():
    catalogue = (*CATALOGUE, *der_datasets(READINGS))
    for d in catalogue:
        assert d.how in HOW, d.path
        if d.source == "scenario":
            continue
        pub = interfaces.publication(d.source)
        if d.how in ("metadata", "layout", "device_names"):
            assert pub.type == "string" if d.how != "layout" else pub is interfaces.COORDINATOR_RECORD, d.path
            continue
        for name in d.fields:
            field = pub.field(name)
            if d.how == "feeders":  # stacked over feeders: single values only
                assert field.per is None, d.path
    assert len({d.path for d in catalogue}) == len(catalogue)
    # Every DER reading is on the wire and in the file.
    assert {f.name for f in interfaces.FEEDER_DERS.fields} == {r.name for r in READINGS}
    assert {d.path.rsplit("/", 1)[-1] for d in catalogue if d.source == interfaces.FEEDER_DERS.key} == {r.name for r in READINGS}


def test_processes_come_from_one_table():
    assert process_names(2, coordinated=True) == ["broker", "transmission", "feeders_0", "feeders_1", "coordinator", "recorder"]
    assert process_names(1, coordinated=False) == ["broker", "transmission", "feeders_0", "recorder"]
    assert kind_of("feeders_12").module == "federates.feeders" and kind_of("feeders_12").checkpoint_part == "feeders"
    with pytest.raises(KeyError):
        kind_of("feeders_x")
    assert kind_of("feeders_3").argv("feeders_3", "fed.json")[-4:] == ["--config", "fed.json", "--group", "3"]
    assert FEDERATE_MODULES == ("federates.transmission", "federates.feeders", "federates.coordinator", "federates.recorder")


def test_a_producer_that_misses_a_declared_field_is_stopped_at_setup():
    FEEDER_POWER.check_written(["p_a", "p_b", "p_c", "p_total", "q_a", "q_b", "q_c", "q_total", "losses_kw", "losses_kvar"])
    with pytest.raises(RuntimeError, match="the table declares"):
        FEEDER_POWER.check_written(["p_a", "p_b", "p_c", "p_total", "q_a", "q_b", "q_c", "q_total", "losses_kw"])
