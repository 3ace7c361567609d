"""benchmarks/finetune_infer.py: the printed ratios and real-time factor against hand computation, and the equal
work it gives xlsr and transformers (same masks, frozen CNN on both sides, same optimizer, eval for inference).

The timer and transcription are replaced by known values; the models are the `tiny` preset on a 0.5 s batch."""

import re
import sys
from types import SimpleNamespace

import pytest
import torch
from _benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("finetune_infer")


@pytest.fixture(scope="module")
def pair(bench):
    torch.manual_seed(0)
    return bench.build_pair("tiny", 12)


def test_both_models_get_the_same_specaugment_and_a_frozen_cnn(pair):
    cfg, ours, theirs = pair
    hf = theirs.config
    assert (hf.mask_time_prob, hf.mask_time_length) == (cfg.mask_prob, cfg.mask_length) == (0.3, cfg.mask_length)
    assert (hf.mask_feature_prob, hf.mask_feature_length) == (cfg.mask_channel_prob, cfg.mask_channel_length)
    assert hf.layerdrop == cfg.layerdrop == 0.0
    assert hf.ctc_loss_reduction == "mean" and hf.ctc_zero_infinity
    trainable = [sum(p.numel() for p in m.parameters() if p.requires_grad) for m in (ours, theirs)]
    cnn = [sum(p.numel() for p in m.parameters()) for m in (ours.wav2vec2.feature_encoder,
                                                             theirs.wav2vec2.feature_extractor)]
    assert cnn[0] == cnn[1] > 0
    assert trainable[0] == trainable[1] == sum(p.numel() for p in ours.parameters()) - cnn[0]


@pytest.mark.parametrize("kind", ["default", "loop"])
def test_both_optimizers_have_the_same_hyperparameters_over_the_trainable_parameters(bench, pair, kind):
    _, ours, theirs = pair
    a = bench.build_optimizer_for("xlsr", ours, kind)
    b = bench.build_optimizer_for("transformers", theirs, kind)
    for opt, model in ((a, ours), (b, theirs)):
        params = [p for g in opt.param_groups for p in g["params"]]
        assert sum(p.numel() for p in params) == sum(p.numel() for p in model.parameters() if p.requires_grad)
        for g in opt.param_groups:  # weight decay 0 in every group, as transformers' TrainingArguments default
            assert (g["lr"], g["betas"], g["eps"], g["weight_decay"]) == (1e-5, (0.9, 0.999), 1e-8, 0.0)
    assert type(a) is type(b)
    assert bool(a.defaults.get("fused")) == bool(b.defaults.get("fused")) == (kind == "default")


def test_printed_ratios_audio_rates_and_real_time_factor(bench, pair, monkeypatch, capsys, tmp_path):
    _, ours, theirs = pair
    monkeypatch.setattr(bench, "build_pair", lambda preset, vocab: pair)
    medians = iter([{"xlsr": 0.25, "transformers": 1.0}, {"xlsr": 0.5, "transformers": 0.75}])
    modes = {}

    clocks = []

    def interleaved_medians(calls, repeat, *, clock):
        clocks.append(clock)
        kind = "step" if not modes else "infer"
        for name, fn in calls.items():  # each closure once, as the timer would
            fn()
            modes[kind, name] = (ours.training, theirs.training)
        return next(medians)

    monkeypatch.setattr(bench, "interleaved_medians", interleaved_medians)
    import xlsr.decode.transcribe as transcribe

    timed = []
    monkeypatch.setattr(transcribe, "load_ctc_model", lambda path, precision: "model")
    monkeypatch.setattr(transcribe, "transcribe_files", lambda ctc, files, show_progress: timed.append(list(files)))
    readings = iter([100.0, 103.0])
    cpu_time = SimpleNamespace(process_time=lambda: 0.0)
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(readings),
                                                       process_time=cpu_time.process_time))
    monkeypatch.setattr(sys, "argv", ["finetune_infer.py", "--preset", "tiny", "--batch", "2", "--seconds", "0.5",
                                      "--repeat", "3", "--threads", str(torch.get_num_threads()), "--vocab", "12",
                                      "--cpu-time"])
    bench.main()
    out = capsys.readouterr().out
    # 2 x 0.5 s = 1 s of audio per call
    assert re.search(r"^xlsr\s+0\.250\s+4\.0\s+0\.500\s+2\.0$", out, re.M), out
    assert re.search(r"^transformers\s+1\.000\s+1\.0\s+0\.750\s+1\.3$", out, re.M), out
    assert "speed-up xlsr / transformers: fine-tuning step 4.00x, inference 1.50x" in out
    assert clocks == [cpu_time.process_time] * 2  # --cpu-time: the steps and the inference calls alike
    # the timed transcription reads all 2 files (1 s of audio) in 3 s
    assert [len(files) for files in timed] == [1, 2]
    assert "xlsr transcribe: 1 s of audio in 3.00 s -> real-time factor 3.000" in out
    # the fine-tuning step runs in train mode, inference in eval mode, on both sides
    assert modes["step", "xlsr"][0] and modes["step", "transformers"][1]
    assert not modes["infer", "xlsr"][0] and not modes["infer", "transformers"][1]
