"""benchmarks/load_large.py and manifest_scale.py: how runs are summarised (median time, largest memory), the units
of what is read from the kernel, the baseline subtracted per million lines, and which way the printed ratios run."""

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def load_large():
    return load_benchmark("load_large")


def _status_kb(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1])


def test_anonymous_memory_is_read_in_bytes(load_large):
    peak = load_large.AnonPeak()
    peak.sample()
    now = _status_kb("RssAnon") * 1024
    assert now / 2 < peak.peak < now * 2


def test_a_sides_figures_peak_rss_in_bytes_and_total_time(load_large, monkeypatch, tmp_path):
    from xlsr.interop import load as interop_load
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

    small = {"conv_layers": [[16, 10, 5], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 3, 2], [16, 2, 2], [16, 2, 2]],
             "hidden_size": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32, "final_dim": 8, "codevector_dim": 8,
             "num_codevectors_per_group": 4, "conv_pos": 4, "conv_pos_groups": 2}
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **small}))
    monkeypatch.setattr(interop_load, "load_pretrained", lambda path: SimpleNamespace(model=model))
    got = load_large.child("xlsr", tmp_path, 0.5, torch.get_num_threads(), None)
    high_water = _status_kb("VmHWM") * 1024  # read after the child's figures: at least as large
    assert high_water / 2 < got["peak_rss"] <= high_water  # ru_maxrss is in KiB on Linux
    assert got["total_s"] == got["load_s"] + got["forward_s"] and got["output"] == [1, 24, 16]


def test_sides_are_summarised_by_median_time_and_largest_memory_and_compared_xlsr_over_transformers(
        load_large, monkeypatch, capsys, tmp_path):
    hf = tmp_path / "tiny" / "hf"
    hf.mkdir(parents=True)
    (hf / "model.safetensors").write_bytes(b"\0" * 1000)
    GB = 1e9

    def run(load, forward, rss, anon):
        return {"load_s": load, "forward_s": forward, "total_s": load + forward, "peak_rss": rss * GB,
                "peak_anon": anon * GB}

    runs = {"transformers": iter([run(2, 1, 1.0, 0.5), run(4, 1, 3.0, 1.0), run(9, 1, 2.0, 0.8)]),
            "xlsr": iter([run(1, 1, 0.5, 0.1), run(1, 1, 1.5, 0.4), run(5, 1, 1.2, 0.2)])}
    monkeypatch.setattr(load_large, "run_child", lambda args, side, path, out=None: next(runs[side]))
    monkeypatch.setattr(sys, "argv", ["load_large.py", "--preset", "tiny", "--dir", str(tmp_path), "--repeat", "3"])
    load_large.main()
    out = capsys.readouterr().out
    assert re.search(r"^transformers\s+4\.00\s+1\.00\s+5\.00\s+3\.00\s+1\.00$", out, re.M), out
    assert re.search(r"^xlsr\s+1\.00\s+1\.00\s+2\.00\s+1\.50\s+0\.40$", out, re.M), out
    assert re.search(r"^xlsr / tf\s+0\.25\s+0\.40\s+0\.50\s+0\.40$", out, re.M), out


# ---------------------------------------------------------------------------------------- manifest_scale.py
def test_manifest_scale_table_uses_the_warm_start_and_subtracts_the_baseline_per_million(capsys):
    bench = load_benchmark("manifest_scale")

    def measured(read, plan, pss, read_cpu=0.0, plan_cpu=0.0):
        return {"read_s": read, "plan_s": plan, "read_cpu_s": read_cpu, "plan_cpu_s": plan_cpu,
                "startup_major_faults": 0, "startup_preempted": 0, "batches_s": 1.0, "peak_pss_mb": pss,
                "main_maxrss_mb": 50.0}

    old = measured(4.0, 2.0, 1100.0)
    rows = {"index": (measured(10.0, 0.0, 900.0), measured(1.0, 0.6, 300.0)), "objects": (old, old)}
    bench._print(2_000_000, rows, {"index": 100.0, "objects": 300.0})
    out = capsys.readouterr().out

    def line(label):
        return re.search(rf"^{re.escape(label)}\s+(\S+)\s+(\S+)\s+(\S+)$", out, re.M).groups()

    assert line("first build: read, wall s") == ("4.0", "10.0", "0.4x")  # the first process builds the index
    assert line("startup: read + plan, wall s") == ("6.0", "1.6", "3.8x")  # a later one maps it
    assert line("startup per 1M, wall s") == ("3.0", "0.8", "3.8x")
    # (1100 - 300) / 2 and (300 - 100) / 2: the rise over the 1,000-line corpus, per million lines
    assert line("PSS over 1k-line corpus, per 1M, MB") == ("400", "100", "4.0x")
