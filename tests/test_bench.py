"""The throughput harness and the analytic FLOPs count."""

import math
import os

import pytest
import torch

from autoprumux.bench import count_flops, format_benchmark, measure_throughput
from autoprumux.models import MuxBertConfig, MuxBertForSequenceClassification

D, LAYERS, HEADS, FFN, LABELS, T = 32, 2, 4, 64, 2, 16


def make(mux_width=1, **compact):
    torch.manual_seed(0)
    config = MuxBertConfig(
        vocab_size=100, hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=FFN, max_position_embeddings=64, num_labels=LABELS, mux_width=mux_width,
        demux_layers=3, **compact,
    )
    return MuxBertForSequenceClassification(config).eval()


def encoder_flops(length, heads=HEADS, ffn=FFN, hidden=D, layers=LAYERS):
    head_size = D // HEADS
    width = heads * head_size
    attention = 2 * length * hidden * width * 3 + 4 * heads * length * length * head_size + 2 * length * width * hidden
    return layers * (attention + 4 * length * hidden * ffn)


def test_flops_match_a_hand_count_for_n1():
    head = 2 * D * D + 2 * D * LABELS  # pooler on [CLS] + classifier
    assert count_flops(make(1), T) == encoder_flops(T) + head


def test_mux_halves_the_flops_per_example_up_to_the_demux():
    n = 2
    demux = 2 * D * (n * D + D) + 2 * n * D * D * 2  # split first layer (keys per slot, state once) + 2 blocks
    head = n * (2 * D * D + 2 * D * LABELS)
    expected = (encoder_flops(T) + demux + head) / n
    flops_2 = count_flops(make(n), T)
    assert flops_2 == pytest.approx(expected)
    ratio = flops_2 / count_flops(make(1), T)
    overhead = (demux + head) / n / count_flops(make(1), T)
    assert abs(ratio - 0.5) <= overhead + 1e-9


def test_a_very_sparse_compacted_model_needs_few_flops():
    dense = count_flops(make(1), T)
    sparse = make(1, compact_hidden_size=16, compact_heads=[1, 0], compact_intermediate=[6, 6])
    assert count_flops(sparse, T) < 0.2 * dense
    assert count_flops(sparse, T) == encoder_flops(T, heads=1, ffn=6, hidden=16, layers=1) + 2 * T * 16 * 6 * 2 + (
        2 * 16 * D + 2 * D * LABELS
    )


def test_harness_reports_positive_finite_numbers_with_a_spread():
    result = measure_throughput(make(2), batch_size=4, seq_len=T, warmup=1, repeats=5, threads=1)
    for value in (result.examples_per_second, result.latency_s, result.flops_per_example):
        assert math.isfinite(value) and value > 0
    assert result.min_examples_per_second <= result.examples_per_second <= result.max_examples_per_second
    assert result.spread_iqr >= 0
    assert result.threads == 1 and result.device == "cpu" and "torch" in result.hardware
    assert result.params == sum(p.numel() for p in make(2).parameters())
    metrics = result.to_metrics()
    assert metrics["throughput"] == result.examples_per_second and metrics["batch_size"] == 4
    assert "examples/s" in format_benchmark(result)


def test_models_compared_side_by_side_get_speedups_over_the_first():
    from autoprumux.bench import compare_throughput, format_comparison

    models = {"plain": make(1), "mux2": make(2)}
    heard = []
    comparison = compare_throughput(models, rounds=2, batch_size=4, seq_len=T, warmup=1, repeats=3, threads=1,
                                    report=heard.append)
    assert [line.split(";")[0] for line in heard] == ["round 1/2 measured", "round 2/2 measured"]
    assert heard[-1].endswith("about 0 s left")
    assert comparison.names == ("plain", "mux2") and all(len(r) == 2 for r in comparison.rounds.values())
    assert comparison.speedup("plain") == 1.0 and comparison.speedup("mux2") > 0
    assert comparison.ideal_speedup("mux2") == pytest.approx(count_flops(make(1), T) / count_flops(make(2), T))
    text = format_comparison(comparison)
    assert "2 interleaved rounds" in text and "plain" in text and "mux2" in text


def test_bench_cli_measures_one_model_or_compares_several(tmp_path, capsys):
    import json

    from autoprumux.cli import main

    for name, width in (("n1", 1), ("n2", 2)):
        make(width).save_pretrained(tmp_path / name / "model")
    common = ["--batch", "2", "--seq-len", str(T), "--repeats", "2", "--warmup", "1", "--threads", "1", "--json"]
    assert main(["bench", str(tmp_path / "n1"), *common]) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["mux_width"] == 1 and single["examples_per_second"] > 0
    assert main(["bench", str(tmp_path / "n1"), str(tmp_path / "n2" / "model"), "--rounds", "2", *common]) == 0
    compared = json.loads(capsys.readouterr().out)
    first, second = compared[str(tmp_path / "n1")], compared[str(tmp_path / "n2" / "model")]
    assert first["speedup"] == 1.0 and len(second["rounds"]) == 2 and second["rounds"][0]["mux_width"] == 2
    assert main(["bench", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("autoprumux: error:")


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_is_measured_on_a_cast_copy_and_recorded(dtype):
    model = make(2)
    result = measure_throughput(model, batch_size=2, seq_len=T, warmup=1, repeats=2, threads=1, dtype=dtype)
    assert result.dtype == dtype and result.to_metrics()["dtype"] == dtype
    assert result.examples_per_second > 0 and f"dtype        {dtype}" in format_benchmark(result)
    assert next(model.parameters()).dtype == torch.float32  # the caller's model keeps its weights
    assert result.flops_per_example == count_flops(make(2), T)


def test_bench_settings_give_the_harness_options_and_the_spec_checks_dtype():
    from autoprumux.bench import bench_options
    from autoprumux.errors import SpecError
    from autoprumux.spec import BenchSettings, spec_from_dict

    assert bench_options(BenchSettings(dtype="bf16"))["dtype"] == "bf16"
    assert spec_from_dict({"name": "x", "bench": {"dtype": "bf16"}}).training.bench.dtype == "bf16"
    with pytest.raises(SpecError, match=r"bench.dtype = 'int8' is invalid; expected one of fp32, bf16, fp16"):
        spec_from_dict({"name": "x", "bench": {"dtype": "int8"}})


def test_bench_cli_takes_a_dtype_and_rejects_an_unknown_one(tmp_path, capsys):
    import json

    from autoprumux.cli import main

    make(1).save_pretrained(tmp_path / "n1" / "model")
    common = ["--batch", "2", "--seq-len", str(T), "--repeats", "2", "--warmup", "1", "--threads", "1", "--json"]
    assert main(["bench", str(tmp_path / "n1"), "--dtype", "bf16", *common]) == 0
    assert json.loads(capsys.readouterr().out)["dtype"] == "bf16"
    assert main(["bench", str(tmp_path / "n1"), "--dtype", "fp8"]) == 2
    assert capsys.readouterr().err.startswith("autoprumux: error: bench: argument --dtype: invalid choice: 'fp8'")


def test_a_measurement_on_a_busy_machine_is_flagged_not_recorded_silently(monkeypatch):
    import dataclasses

    import autoprumux.bench as bench

    monkeypatch.setattr(bench, "load_average", lambda: 0.2)
    monkeypatch.setattr(bench, "cpu_cores", lambda: 2)
    quiet = measure_throughput(make(1), batch_size=4, seq_len=T, warmup=1, repeats=5, threads=1)
    quiet = dataclasses.replace(quiet, spread_iqr=0.05 * quiet.examples_per_second)
    assert quiet.busy_reason() is None and quiet.to_metrics()["throughput_busy"] == 0
    assert "busy" not in format_benchmark(quiet)
    # The repeats disagree: a spread of 40% of the median.
    noisy = dataclasses.replace(quiet, spread_iqr=0.4 * quiet.examples_per_second)
    assert "spread 40% of the median" in noisy.busy_reason() and noisy.to_metrics()["throughput_busy"] == 1
    assert "warning: the machine was busy (spread 40%" in format_benchmark(noisy)
    # Other processes keep more than the 2 cores busy while it measures.
    monkeypatch.setattr(bench, "load_average", lambda: 5.0)
    loaded = measure_throughput(make(1), batch_size=4, seq_len=T, warmup=1, repeats=5, threads=1)
    assert "load 5.0 on 2 cores" in loaded.busy_reason() and loaded.to_dict()["busy"] == loaded.busy_reason()


def test_oversubscribed_says_when_other_processes_leave_too_few_cores(monkeypatch):
    import autoprumux.machine as machine

    monkeypatch.setattr(machine, "cpu_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "load_average", lambda: 1.0)  # one busy process on 2 cores
    assert machine.oversubscribed() == "the machine is busy (load 1.0 from other processes, 2 thread(s) to add, 2 cores)"
    assert machine.oversubscribed(threads=1) is None  # one thread still finds a free core
    monkeypatch.setattr(machine, "load_average", lambda: 0.2)
    assert machine.oversubscribed() is None


def test_a_busy_machine_makes_openmp_threads_yield_unless_the_user_chose(monkeypatch):
    import autoprumux.machine as machine

    monkeypatch.setattr(machine, "cpu_cores", lambda: 2)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "load_average", lambda: 0.3)
    assert machine.yield_threads_if_busy() is None and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.setattr(machine, "load_average", lambda: 3.0)
    assert "OMP_WAIT_POLICY=PASSIVE" in machine.yield_threads_if_busy()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # the user's choice stands
    assert machine.yield_threads_if_busy().startswith("the machine is busy (load 3.0")
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_hardware_line_tells_cpus_of_one_name_apart_by_family_model_and_stepping():
    # virtual machines may name every host's CPU "AMD EPYC"; two such hosts trained the demo to
    # different accuracies, so the line carries what /proc/cpuinfo says of the first processor
    from pathlib import Path

    import torch

    from autoprumux.bench import hardware_fingerprint

    line = hardware_fingerprint(torch.device("cpu"), 2)
    info = Path("/proc/cpuinfo")
    if not info.is_file():  # not Linux: the name alone
        assert line.startswith("cpu ") and "2 threads" in line
        return
    first = info.read_text().split("\n\n")[0]
    fields = dict((k.strip(), v.strip()) for k, _, v in (row.partition(":") for row in first.splitlines()))
    for key, label in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping")):
        if key in fields:
            assert f"{label} {fields[key]}" in line
    assert line.endswith(f"torch {torch.__version__}") and "2 threads" in line
