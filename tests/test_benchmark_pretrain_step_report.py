"""benchmarks/pretrain_step.py: the arithmetic behind its printed claims (audio-s/s, % of the measured matmul
peak, the speed-up's direction, activation memory) and the equal work it gives both models.

The timer, FLOP counter, memory probe and peak are fed known values; the printed figures are checked against
hand computation. The models are small; nothing here is timed."""

import inspect
import re
from types import SimpleNamespace

import pytest
import torch
from _benchmark_scripts import load_benchmark

from xlsr.model import Wav2Vec2Config
from xlsr.model.masking import compute_mask_indices


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("pretrain_step")


SMALL = {"conv_layers": [[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 3, 2], [32, 2, 2], [32, 2, 2]],
         "hidden_size": 32, "num_layers": 2, "num_heads": 2, "ffn_dim": 64, "final_dim": 16, "codevector_dim": 16,
         "num_codevectors_per_group": 8, "num_negatives": 5, "mask_prob": 0.5, "mask_length": 3, "conv_pos": 8,
         "conv_pos_groups": 4}


def small_config(**fields) -> Wav2Vec2Config:
    return Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL, **fields})


def test_the_peak_is_the_best_of_the_timed_matmuls_at_two_flops_per_multiply_add(bench):
    durations = iter([3.0, 1.0, 2.0, 5.0])
    now = [0.0]
    starts = []

    def clock():  # every other reading ends a matmul: it adds that matmul's duration
        if len(starts) % 2:
            now[0] += next(durations)
        starts.append(now[0])
        return now[0]

    n = 8
    peak = bench.peak_matmul_flops(torch.device("cpu"), torch.float32, n=n, reps=4, clock=clock)
    assert peak == 2 * n**3 / 1.0


def test_activation_memory_counts_what_the_forward_still_holds_not_its_freed_temporaries(bench):
    def forward():
        a = torch.ones(262144)  # 1 MiB, freed at the end of the forward
        b = a * 2  # 1 MiB, freed too
        return b + 1  # 1 MiB, held by the caller

    assert bench.activation_bytes(forward, torch.device("cpu")) == 2**20


class Tagged:
    def __init__(self, name, fn=lambda: None):
        self.name, self.fn = name, fn

    def __call__(self):
        return self.fn()


def run_main(bench, monkeypatch, capsys, medians, flops, memory, peaks, extra=()):
    """main() with the models' closures, FLOP counts, memory, peak and timer replaced by known values."""
    seen = {}

    def ours_steps(model, args, call, autocast):
        class Recorder:
            def __call__(self, waveforms, **kwargs):
                seen["xlsr"] = (waveforms, kwargs["mask_time_indices"])

        call(Recorder())
        return Tagged("xlsr"), Tagged("xlsr"), Tagged("xlsr")

    def hf_steps(cfg, args, device, waveforms, mask, autocast):
        seen["transformers"] = (waveforms, mask)
        return Tagged("transformers"), Tagged("transformers"), Tagged("transformers")

    peak_values = iter(peaks)
    timed = {}

    def interleaved_medians(calls, repeat, *, warmup, clock, sync):
        timed.update(names=sorted(calls), repeat=repeat, warmup=warmup, clock=clock)
        return dict(medians)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(bench, "ours_steps", ours_steps)
    monkeypatch.setattr(bench, "hf_steps", hf_steps)
    monkeypatch.setattr(bench, "count_flops", lambda step, torch_conv_backward=False: flops[step.name])
    monkeypatch.setattr(bench, "activation_bytes", lambda forward, device: memory[forward.name])
    def peak_matmul_flops(device, dtype, clock=None):
        timed.setdefault("peak_clocks", []).append(clock)
        return next(peak_values)

    monkeypatch.setattr(bench, "peak_matmul_flops", peak_matmul_flops)
    monkeypatch.setattr(bench, "interleaved_medians", interleaved_medians)
    assert bench.main(["--preset", "tiny", "--batch", "2", "--seconds", "1", "--repeat", "3", "--warmup", "1",
                       *extra]) == 0
    return capsys.readouterr().out, seen, timed


def row(out: str, name: str) -> tuple[float, ...]:
    line = next(line for line in out.splitlines() if line.strip().startswith(f"{name}:"))
    pattern = (r"([\d.]+) s/step\s+([\d.]+) audio-s/s\s+([\d.]+) GFLOP/step\s+([\d.]+) GFLOP/s = ([\d.]+)% of peak"
               r"\s+activations\s+([\d.]+) MiB")
    return tuple(float(v) for v in re.search(pattern, line).groups())


def test_printed_figures_follow_from_the_medians_flops_peak_and_memory(bench, monkeypatch, capsys):
    # 2 rows x 1 s = 2 s of audio per step; the peak is the better of the two measurements (20 GFLOP/s)
    out, seen, timed = run_main(bench, monkeypatch, capsys, medians={"xlsr": 0.5, "transformers": 2.0},
                                flops={"xlsr": 3e9, "transformers": 4e9},
                                memory={"xlsr": 10 * 2**20, "transformers": 40 * 2**20}, peaks=[10e9, 20e9])
    assert row(out, "xlsr") == (0.5, 4.0, 3.0, 6.0, 30.0, 10.0)
    assert row(out, "transformers") == (2.0, 1.0, 4.0, 2.0, 10.0, 40.0)
    assert "peak matmul (fp32, 2048^2): 20.0 GFLOP/s" in out
    # the ratio reads "xlsr is N times as fast": transformers' time over xlsr's; memory the other way round
    assert "speed-up xlsr / transformers: 4.00x; activation memory xlsr / transformers: 0.25x" in out
    assert timed["names"] == ["transformers", "xlsr"] and (timed["repeat"], timed["warmup"]) == (3, 1)
    # both models get the very same batch and mask
    assert seen["transformers"][0] is seen["xlsr"][0] and seen["transformers"][1] is seen["xlsr"][1]
    assert seen["xlsr"][0].shape == (2, 16000)


def test_the_peak_measured_after_the_steps_counts_when_it_is_the_better_one(bench, monkeypatch, capsys):
    out, _, _ = run_main(bench, monkeypatch, capsys, medians={"xlsr": 1.0, "transformers": 1.0},
                         flops={"xlsr": 5e9, "transformers": 5e9}, memory={"xlsr": 1, "transformers": 1},
                         peaks=[25e9, 10e9])
    assert "peak matmul (fp32, 2048^2): 25.0 GFLOP/s" in out
    assert row(out, "xlsr")[4] == 20.0


def test_cpu_time_times_both_models_and_the_peak_by_process_time(bench, monkeypatch, capsys):
    import time

    _, _, timed = run_main(bench, monkeypatch, capsys, medians={"xlsr": 1.0, "transformers": 1.0},
                           flops={"xlsr": 1, "transformers": 1}, memory={"xlsr": 1, "transformers": 1},
                           peaks=[1.0, 1.0], extra=["--cpu-time"])
    assert timed["clock"] is time.process_time
    assert timed["peak_clocks"] == [time.process_time] * 2  # the peak is measured the same way


def test_the_transformers_config_carries_every_dropout_of_ours(bench):
    cfg = small_config(dropout=0.11, attention_dropout=0.12, activation_dropout=0.13, dropout_input=0.14,
                       dropout_features=0.15, final_dropout=0.16, layerdrop=0.17)
    hf = bench.hf_config(cfg)
    assert (hf.hidden_dropout, hf.attention_dropout, hf.activation_dropout, hf.feat_proj_dropout,
            hf.feat_quantizer_dropout, hf.final_dropout, hf.layerdrop) == (0.11, 0.12, 0.13, 0.14, 0.15, 0.16, 0.17)


def _pair(bench, **args):
    """(ours, theirs): each side's (forward, step, eager step) closures, as main builds them."""
    from xlsr.model import Wav2Vec2ForPreTraining

    torch.manual_seed(0)
    cfg = small_config()
    args = SimpleNamespace(**{"activation_checkpointing": False, "optimizer": "default", "compile": False, **args})
    waveforms = torch.randn(2, 8000)
    model = Wav2Vec2ForPreTraining(cfg).train()
    T = int(model.wav2vec2.frame_lengths(torch.tensor([8000]))[0])
    gen = torch.Generator().manual_seed(0)
    mask = compute_mask_indices(torch.full((2,), T), T, cfg.mask_prob, cfg.mask_length, cfg.min_masks, gen)
    from contextlib import nullcontext

    # the model as main builds it (train mode)
    ours = bench.ours_steps(model, args, lambda m: m(waveforms, mask_time_indices=mask, generator=gen), nullcontext())
    theirs = bench.hf_steps(cfg, args, torch.device("cpu"), waveforms, mask, nullcontext())
    return ours, theirs


def _model(closures):
    return closures[0].__defaults__[0]  # forward(m=run)


def _optimizer(closures):
    return inspect.getclosurevars(closures[1]).nonlocals["opt"]


@pytest.mark.parametrize("kind", ["default", "example", "loop"])
def test_both_models_step_in_train_mode_with_the_same_adam_hyperparameters(bench, kind):
    ours, theirs = _pair(bench, optimizer=kind)
    assert _model(ours).training and _model(theirs).training  # dropout and Gumbel noise on both sides
    a, b = _optimizer(ours), _optimizer(theirs)
    for key in ("lr", "betas", "eps"):
        assert a.defaults[key] == b.defaults[key], key
    assert a.defaults["betas"] == (0.9, 0.98) and a.defaults["eps"] == 1e-6
    from xlsr.train.optimizer import fused_adamw_applies

    fused = bool(fused_adamw_applies(list(_model(theirs).parameters())))
    assert bool(b.defaults.get("fused")) == (fused and kind == "default")  # only the default is the fused kernel
    assert bool(a.defaults.get("fused")) == (fused and kind != "loop")
    assert isinstance(b, torch.optim.Adam if kind == "loop" else torch.optim.AdamW)


def _hf_checkpointing(model) -> bool:  # transformers 5 renamed is_gradient_checkpointing
    if hasattr(type(model), "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


def test_activation_checkpointing_reaches_both_models(bench):
    ours, theirs = _pair(bench, activation_checkpointing=True)
    assert _model(ours).wav2vec2.encoder.activation_checkpointing and _hf_checkpointing(_model(theirs))
    ours, theirs = _pair(bench)
    assert not _model(ours).wav2vec2.encoder.activation_checkpointing and not _hf_checkpointing(_model(theirs))
