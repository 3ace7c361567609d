"""The component benchmarks' tables (benchmarks/cnn_conv.py, optimizer_step.py, profile_step.py): per-layer
medians, the whole CNN as the median of per-round sums, speed-ups against the reference, shares of a step; and
optimizer_step's three optimizers given the same parameter groups. Timers are fed known values."""

import re
from types import SimpleNamespace

import pytest
from _benchmark_scripts import load_benchmark


def test_cnn_table_medians_whole_cnn_and_speed_up_over_strided(monkeypatch, capsys):
    bench = load_benchmark("cnn_conv")
    ms = {"strided": 1.0, "conv1d": 2.0, "conv": 0.5, "conv_mm_weight": 0.25}  # forward = backward, per layer
    rounds = [1.0, 5.0, 2.0]  # each round's factor: median 2, mean 2.67
    impls = {name: SimpleNamespace(name=name) for name in ms}
    calls = {name: 0 for name in ms}

    def time_layer(conv, x, w, b, stride, autocast, clock):
        i = calls[conv.name] % (1 + len(rounds))  # per layer: one warm-up, then one call per round
        calls[conv.name] += 1
        seconds = 1.0 if i == 0 else ms[conv.name] * rounds[i - 1] / 1e3
        return seconds, seconds

    monkeypatch.setattr(bench, "candidates", lambda: impls)
    monkeypatch.setattr(bench, "time_layer", time_layer)
    assert bench.main(["--channels", "4", "--batch", "1", "--seconds", "0.1", "--repeat", "3"]) == 0
    out = capsys.readouterr().out
    layers = [line for line in out.splitlines() if re.match(r"\d+->\d+ k", line)]
    assert len(layers) == 7
    for line in layers:
        assert re.findall(r"([\d.]+) \+\s+([\d.]+)", line) == [("2.0", "2.0"), ("4.0", "4.0"), ("1.0", "1.0"),
                                                                 ("0.5", "0.5")]
    # 7 layers x (forward + backward) x the median round
    assert re.search(r"^whole CNN \(ms\)\s+28\.0\s+56\.0\s+14\.0\s+7\.0$", out, re.M), out
    assert re.search(r"^speed-up vs strided\s+1\.00x\s+0\.50x\s+2\.00x\s+4\.00x$", out, re.M), out
    assert "fastest here: conv_mm_weight" in out


def test_optimizer_step_compares_over_the_same_groups_and_prints_loop_over_each(monkeypatch, capsys):
    bench = load_benchmark("optimizer_step")
    seen = {}

    def interleaved_medians(calls, repeat, *, clock, sync):
        seen.update({name: step.__self__ for name, step in calls.items()})
        return {name: {"per-tensor loop": 0.04, "foreach": 0.02}.get(name, 0.01) for name in calls}

    monkeypatch.setattr(bench, "interleaved_medians", interleaved_medians)
    import torch

    assert bench.main(["--preset", "tiny", "--repeat", "3", "--threads", str(torch.get_num_threads())]) == 0
    out = capsys.readouterr().out
    ours = next(opt for name, opt in seen.items() if name.startswith("xlsr"))
    decays = [g["weight_decay"] for g in ours.param_groups]
    assert len(set(decays)) > 1  # weight matrices decay, biases and norms do not
    for opt in seen.values():
        assert [g["weight_decay"] for g in opt.param_groups] == decays
        assert [len(g["params"]) for g in opt.param_groups] == [len(g["params"]) for g in ours.param_groups]
        assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ours.param_groups]
    assert re.search(r"^xlsr \(.*\)\s+10\.0 ms\s+loop / this: 4\.00x$", out, re.M), out
    assert re.search(r"^per-tensor loop\s+40\.0 ms\s+loop / this: 1\.00x$", out, re.M), out
    assert re.search(r"^foreach\s+20\.0 ms\s+loop / this: 2\.00x$", out, re.M), out


@pytest.mark.parametrize("sort, order", [("self", ["aten::a", "aten::b", "aten::c"]),
                                         ("total", ["aten::a", "aten::c", "aten::b"])])
def test_profile_shares_are_of_the_summed_self_time(sort, order):
    bench = load_benchmark("profile_step")
    import torch

    def event(key, self_us, total_us):
        return SimpleNamespace(key=key, self_cpu_time_total=self_us, cpu_time_total=total_us, count=2)

    events = [event("aten::b", 300.0, 300.0), event("aten::a", 600.0, 1000.0), event("aten::c", 100.0, 700.0)]
    table = bench.top_ops_table(SimpleNamespace(key_averages=lambda: events), torch.device("cpu"), 3, sort)
    lines = table.splitlines()
    assert lines[1] == "(self CPU time of all ops: 1.0 ms)"
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert [line.split()[0] for line in lines[2:]] == order
    assert rows["aten::a"] == ["0.6", "60.0%", "1.0", "2"]
    assert rows["aten::b"][1] == "30.0%" and rows["aten::c"][1] == "10.0%"
