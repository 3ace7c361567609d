"""The throughput benchmarks' arithmetic (benchmarks/pretrain_throughput.py, shard_throughput.py, repeat_runs.py,
synth_speed.py): what is summed, what is weighted, which updates are left out, which way the printed ratio runs.

Logs, loaders, clocks and child runs are replaced by known values; the figures are checked against hand
computation. Nothing here is timed."""

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from _benchmark_scripts import load_benchmark


def args(**over):
    fields = dict(preset="tiny", updates=3, warmup=1, lr=5e-4, max_tokens=32000, max_sample_size=16000,
                  min_sample_size=8000, num_workers=0, precision="fp32", device="cpu", seed=0, negatives=5)
    return SimpleNamespace(**{**fields, **over})


# ---------------------------------------------------------------------------------------- pretrain_throughput.py
def test_xlsr_side_leaves_out_the_warmup_and_weights_rates_by_update_time(monkeypatch, tmp_path):
    bench = load_benchmark("pretrain_throughput")
    records = [{"split": "train", "update": 1, "seconds_per_update": 10.0, "audio_s_per_s": 1.0, "data_wait_share": 0.9},
               {"split": "train", "update": 2, "seconds_per_update": 2.0, "audio_s_per_s": 3.0, "data_wait_share": 0.5},
               {"split": "valid", "update": 2, "seconds_per_update": 99.0, "audio_s_per_s": 99.0},
               {"split": "train", "update": 3, "seconds_per_update": 1.0, "audio_s_per_s": 6.0, "data_wait_share": 0.0}]

    def pretrain(cfg):
        assert cfg.max_updates == 3 and cfg.log_every == 1 and cfg.model == {"num_negatives": 5}
        Path(cfg.out).mkdir(parents=True)
        (Path(cfg.out) / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    import xlsr.train.pretrain

    monkeypatch.setattr(xlsr.train.pretrain, "pretrain", pretrain)
    got = bench.xlsr_run(args(), tmp_path / "data", tmp_path / "run")
    # updates 2 and 3: 3 s, 2 x 3 + 1 x 6 = 12 s of audio, 0.5 x 2 + 0 x 1 = 1 s waiting
    assert got == {"updates": 2, "seconds": 3.0, "audio": 12.0, "wait": 1.0}


class FakeLoader:
    def __init__(self, batches):
        self.batches, self.epochs = batches, []

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def test_transformers_side_counts_the_updates_after_the_warmup_their_audio_and_data_wait(monkeypatch, tmp_path):
    bench = load_benchmark("pretrain_throughput")
    step = load_benchmark("pretrain_step")
    from xlsr.model import Wav2Vec2Config

    small = Wav2Vec2Config.from_dict({
        **Wav2Vec2Config.preset("tiny").to_dict(), "hidden_size": 32, "num_layers": 1, "num_heads": 2,
        "ffn_dim": 64, "final_dim": 16, "codevector_dim": 16, "num_codevectors_per_group": 8, "conv_pos": 8,
        "conv_pos_groups": 4, "conv_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2],
                                              [32, 2, 2], [32, 2, 2]]})
    monkeypatch.setattr(sys, "path", list(sys.path))  # hf_run puts benchmarks/ on it
    monkeypatch.setitem(sys.modules, "pretrain_step", SimpleNamespace(hf_config=lambda cfg: step.hf_config(small)))
    g = torch.Generator().manual_seed(0)
    loader = FakeLoader([SimpleNamespace(waveforms=torch.randn(b, 8000, generator=g)) for b in (1, 2)])
    import xlsr.data.batching
    import xlsr.data.manifest

    monkeypatch.setattr(xlsr.data.batching, "pretrain_loader", lambda utts, **kw: loader)
    monkeypatch.setattr(xlsr.data.manifest, "read_split", lambda data, split: [])
    now = [0.0]

    def perf_counter():  # one second between readings: a counted update reads 3 times (start, after next(), end)
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=perf_counter))
    got = bench.hf_run(args(updates=3, warmup=1), tmp_path)
    # updates 2 and 3 (the second batch, then the next epoch's first): 2 x 0.5 s + 1 x 0.5 s of audio
    assert got == {"updates": 2, "seconds": 4.0, "audio": 1.5, "wait": 2.0}
    assert loader.epochs == [1]


def test_printed_rates_and_the_speed_up_direction(monkeypatch, capsys, tmp_path):
    bench = load_benchmark("pretrain_throughput")
    monkeypatch.setattr(bench, "xlsr_run", lambda a, data, out: {"updates": 4, "seconds": 2.0, "audio": 16.0,
                                                                  "wait": 0.5})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bench, "hf_run", lambda a, data: {"updates": 4, "seconds": 8.0, "audio": 16.0, "wait": 0.8})
    assert bench.main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+xlsr\s+0\.500\s+8\.0\s+25\.0%$", out, re.M), out
    assert re.search(r"^\s+transformers\s+2\.000\s+2\.0\s+10\.0%$", out, re.M), out
    assert "xlsr / transformers audio-s/s: 4.00x" in out


# ---------------------------------------------------------------------------------------- shard_throughput.py
def test_a_runs_rates_are_weighted_by_update_time():
    bench = load_benchmark("shard_throughput")
    recs = [{"seconds_per_update": 1.0, "data_wait_share": 0.5, "audio_s_per_s": 10.0},
            {"seconds_per_update": 3.0, "data_wait_share": 0.1, "audio_s_per_s": 2.0}]
    assert bench._over_run(recs, None) == 2.0
    assert bench._over_run(recs, "data_wait_share") == pytest.approx(0.8 / 4)
    assert bench._over_run(recs, "audio_s_per_s") == pytest.approx(16.0 / 4)


def test_reading_throughput_keeps_each_sources_best_run_and_prints_shards_over_files(monkeypatch, capsys):
    bench = load_benchmark("shard_throughput")
    monkeypatch.setattr(bench, "read_split", lambda data, split: [SimpleNamespace(num_samples=16000)] * 10)
    monkeypatch.setattr(bench, "pretrain_loader", lambda utts, **kw: "files")
    monkeypatch.setattr(bench, "shard_pretrain_loader", lambda shards, **kw: "shards")
    runs = {"files": iter([(30, 3.0), (30, 2.0)]), "shards": iter([(30, 1.0), (30, 1.5)])}  # (utts, wall)
    monkeypatch.setattr(bench, "read_through", lambda loader, n: dict(zip(
        ("utts", "wall"), next(runs[loader]), strict=True), audio=60.0, cpu=1.0))
    bench.throughput(SimpleNamespace(max_tokens=1, max_sample_size=1, workers=0, epochs=3, repeats=2), "d", "s")
    out = capsys.readouterr().out
    assert re.search(r"^files\s+15\.0\s+30\.0\s+2\.00", out, re.M), out
    assert re.search(r"^shards\s+30\.0\s+60\.0\s+1\.00", out, re.M), out
    assert "shards / files throughput: 2.00x" in out


def test_reading_through_a_loader_counts_rows_and_unpadded_audio_across_epochs(monkeypatch):
    bench = load_benchmark("shard_throughput")
    batch = SimpleNamespace(waveforms=torch.zeros(2, 32000), lengths=torch.tensor([32000, 16000]))
    loader = FakeLoader([batch, batch])
    loader.epoch = 0
    loader.set_epoch = lambda epoch: setattr(loader, "epoch", epoch)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=iter([1.0, 5.0]).__next__, sleep=lambda s: None))
    cpu = iter([10.0, 12.5])
    monkeypatch.setattr(bench, "_cpu", lambda: next(cpu))
    got = bench.read_through(loader, 6)  # two epochs of 4 rows: stops after the 6th row
    assert got == {"utts": 6, "audio": 9.0, "wall": 4.0, "cpu": 2.5}


# ---------------------------------------------------------------------------------------- repeat_runs.py
def test_repeat_runs_prints_with_over_without(monkeypatch, capsys, tmp_path):
    bench = load_benchmark("repeat_runs")
    (tmp_path / "corpus" / "es").mkdir(parents=True)
    (tmp_path / "corpus" / "es" / "train.jsonl").write_text("")
    rows = {"without": [{"resident_bytes": 400 * 2**20, "seconds_per_update": 2.0}],
            "with": [{"resident_bytes": 300 * 2**20, "seconds_per_update": 1.0}], "warmup": [{}]}
    monkeypatch.setattr(bench, "run_mode", lambda work, mode, runs, updates: rows[mode])
    monkeypatch.setattr(sys, "argv", ["repeat_runs.py", "--work", str(tmp_path), "--runs", "1"])
    bench.main()
    out = capsys.readouterr().out
    assert re.search(r"^\s+0\s+400 /\s+300 /\s+0\.75x\s+2\.000 / 1\.000 /\s+0\.50x$", out, re.M), out


# ---------------------------------------------------------------------------------------- synth_speed.py
def test_synthesis_speed_is_audio_over_cpu_time_and_every_repeat_must_reach_the_target(monkeypatch, capsys):
    bench = load_benchmark("synth_speed")

    def run(audio, cpu, wall):
        return {"utterances": 3, "audio_s": audio, "cpu_s": cpu, "wall_s": wall, "effects": {}, "speakers": {}}

    results = {  # per case, two fresh processes; each: setup, then the first and the second run
        "clean": [{"setup_cpu_s": 1.0, "runs": [run(600, 2.0, 9.0), run(600, 2.0, 9.0)]}] * 2,
        "default": [{"setup_cpu_s": 1.0, "runs": [run(600, 2.0, 2.0), run(600, 2.0, 2.0)]},
                    {"setup_cpu_s": 1.0, "runs": [run(600, 4.0, 4.0), run(600, 3.0, 3.0)]}]}
    monkeypatch.setattr(bench, "run_case", lambda case, a: results[case].pop(0))
    monkeypatch.setattr(sys, "argv", ["synth_speed.py", "--repeats", "2"])
    bench.main()
    out = capsys.readouterr().out
    # clean: 300x per CPU-second however long the wall clock took; default: 150x-300x, one process below 200x
    assert re.search(r"^clean\s+first\s+3\s+600\s+2\.00\s+9\.00\s+300x OK", out, re.M), out
    assert re.search(r"^default\s+first\s+3\s+600\s+2\.00-4\.00\s+2\.00-4\.00\s+150-300x BELOW", out, re.M), out
    assert re.search(r"^default\s+second\s+3\s+600\s+2\.00-3\.00\s+2\.00-3\.00\s+200-300x OK", out, re.M), out
