"""results/<sweep>/README.md: generated from the table, written atomically."""

from importlib.metadata import version

import pandas as pd
import pytest

from autoprumux.spec import spec_from_dict
from autoprumux.sweep.provenance import provenance_markdown, wall_time_s, write_provenance


def table(**overrides):
    rows = [
        dict(mux=1, sparsity_target=0.0, sparsity=0.0, accuracy=0.9, throughput=1000.0, duration_s=60.0,
             status="COMPLETE", started_at="2026-01-01T10:00:00+00:00", finished_at="2026-01-01T10:01:00+00:00",
             code_version="abc1234", hardware="cpu X, 2 threads", device="cpu", batch_size=64, seq_len=24),
        dict(mux=2, sparsity_target=0.9, sparsity=0.917, accuracy=0.8, throughput=5000.0, duration_s=90.0,
             status="COMPLETE", started_at="2026-01-01T10:01:00+00:00", finished_at="2026-01-01T10:03:30+00:00",
             code_version="abc1234", hardware="cpu X, 2 threads", device="cpu", batch_size=64, seq_len=24),
        dict(mux=4, sparsity_target=0.0, sparsity=None, accuracy=None, throughput=None, duration_s=None,
             status="FAIL", started_at="2026-01-01T10:04:00+00:00", finished_at=None,
             code_version=None, hardware=None, device=None, batch_size=None, seq_len=None),
    ]
    return pd.DataFrame(rows).assign(**overrides)


def test_wall_time_spans_first_start_to_last_finish():
    assert wall_time_s(table().iloc[:2]) == pytest.approx(210.0)
    assert wall_time_s(table().iloc[:0]) is None


def test_readme_reports_finished_rows_with_speedups(tmp_path):
    spec = spec_from_dict({"name": "p", "results_dir": str(tmp_path / "p")})
    text = provenance_markdown(spec, table(), stages_built=5, stages_reused=3)
    assert "grid points done: 2 of 3" in text and "5 trained, 3 reused" in text
    assert "`abc1234`" in text and "`cpu X, 2 threads`" in text
    assert f"transformers {version('transformers')}, tokenizers {version('tokenizers')}" in text
    assert "| 2 | 0.90 | 0.917 | 0.8000 | 5,000 | 5.00x | 1 min 30 s |" in text
    assert "| 4 |" not in text  # the failed point is counted, not summarised
    path = write_provenance(spec, table(), stages_built=5, stages_reused=3)
    assert path == tmp_path / "p" / "README.md" and path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["README.md"]  # no temporary file left behind
