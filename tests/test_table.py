"""The results-table schema: validation errors and atomic writes."""

import math

import pandas as pd
import pytest

from autoprumux.errors import TableError
from autoprumux.table import COLUMNS, MINIMAL_COLUMNS, append_rows, finished_rows, read_table, write_table


def row(**overrides):
    base = {"mux": 1, "sparsity": 0.0, "accuracy": 0.9, "throughput": 100.0, "status": "COMPLETE"}
    return {**base, **overrides}


def test_schema_has_the_design_columns():
    for name in ("sweep", "task", "model", "mux", "sparsity_target", "sparsity", "accuracy", "throughput",
                 "throughput_spread", "batch_size", "seq_len", "params", "device", "hardware", "seed", "status",
                 "duration_s", "trial_number", "started_at", "finished_at", "checkpoint", "code_version"):
        assert name in COLUMNS
    assert COLUMNS["throughput"].unit == "examples/s"
    assert set(MINIMAL_COLUMNS) <= set(COLUMNS)


def test_round_trip_and_append(tmp_path):
    path = tmp_path / "t.csv"
    append_rows(path, [row(), row(mux=2, throughput=180.0)])
    append_rows(path, [row(mux=4, throughput=300.0)])
    table = read_table(path)
    assert list(table["mux"]) == [1, 2, 4]
    assert table["throughput"].dtype.kind == "f"
    assert list(table.columns[:4]) == [c for c in COLUMNS if c in table.columns][:4]
    assert not list(tmp_path.glob(".t.csv.*"))  # no temporary files left behind


def test_text_columns_read_back_as_text(tmp_path):
    # commit 9922e10 of this project: pandas parsed its hash as 9.922e13 and the provenance lost it
    path = tmp_path / "t.csv"
    append_rows(path, [row(code_version="9922e10", task="007"), row(mux=2, code_version=None)])
    table = read_table(path)
    assert table["code_version"].iloc[0] == "9922e10" and table["task"].iloc[0] == "007"
    assert pd.isna(table["code_version"].iloc[1])


@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        (pd.DataFrame(), "no rows"),
        (pd.DataFrame(columns=list(MINIMAL_COLUMNS)), "no rows"),
        (pd.DataFrame([{"mux": 1, "sparsity": 0.0, "accuracy": 0.9}]), "throughput"),
        (pd.DataFrame([row(accuracy=math.nan)]), "'accuracy' is empty"),
        (pd.DataFrame([row(accuracy=93.0)]), "fraction"),
        (pd.DataFrame([row(mux="two")]), "'mux' must hold numbers"),
        (pd.DataFrame([row(mux=0)]), "integers >= 1"),
        (pd.DataFrame([row(mux=1.5)]), "column 'mux' must hold integers (inputs/sequence); got 1.5"),
        (pd.DataFrame([row(sparsity=1.01)]), "'sparsity' must be a fraction in [0, 1]"),
        (pd.DataFrame([row(sparsity_target=1.0, sparsity=0.9)]), "'sparsity_target' must be a fraction in [0, 1)"),
    ],
)
def test_invalid_tables(tmp_path, frame, needle):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(TableError) as info:
        read_table(path)
    assert needle in str(info.value)


def test_missing_file_and_unfinished_rows(tmp_path):
    with pytest.raises(TableError, match="does not exist"):
        read_table(tmp_path / "none.csv")
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame([row(), row(status="FAIL", accuracy=math.nan)]), path)
    table = read_table(path)  # NaN in an unfinished row is fine
    assert len(finished_rows(table)) == 1


def test_failed_write_keeps_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame([row()]), path)
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", boom)
    with pytest.raises(OSError):
        write_table(pd.DataFrame([row(mux=2)]), path)
    assert path.read_text() == before
    assert not list(tmp_path.glob(".t.csv.*"))


def test_a_fully_pruned_encoder_is_a_valid_measurement(tmp_path):
    path = tmp_path / "t.csv"
    write_table(pd.DataFrame([row(), row(mux=2, sparsity_target=0.95, sparsity=1.0)]), path)
    assert read_table(path)["sparsity"].max() == 1.0
