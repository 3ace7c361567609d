"""Time one pretraining step (forward + backward + Adam) of xlsr and of transformers' Wav2Vec2ForPreTraining.

Both models get the identical configuration (random weights, offline), the same batch, the same mask
and negatives of the same K. The steps are interleaved (one xlsr step, one transformers step, --repeat times,
after --warmup untimed ones), so machine noise hits both alike; the median of the --repeat runs is printed for
each, as audio-seconds per second, their ratio, and the achieved FLOP/s as a share of the measured peak matmul
FLOP/s of this machine, and the activation memory: bytes the forward pass allocates and still holds when
backward starts. `--activation-checkpointing` turns on recomputation in both (ours: `set_activation_checkpointing`;
transformers: `activation_checkpointing_enable`). `--compile` runs both models through torch.compile (the
compilation happens in the warm-up steps). Both models step with torch's fused AdamW (`--optimizer default`):
xlsr through its `build_optimizer`, transformers as its Trainer does by default with torch >= 2.8
(`adamw_torch_fused`), with wav2vec 2.0's betas and eps. `--optimizer example` gives transformers' side the
per-tensor torch.optim.AdamW of its pretraining example (run_wav2vec2_pretraining_no_trainer.py) against xlsr's
fused one, as the default did from 2026-12-05 to 2026-12-06; `--optimizer loop` gives both torch's per-tensor
Adam, as before 2026-12-05. The FLOPs are counted by torch's FlopCounterMode with a grouped convolution's weight
gradient counted once (`conv_backward_flops`); `--flops` prints that count and torch's own, and exits.

    python benchmarks/pretrain_step.py --preset tiny --batch 8 --seconds 4 --device cpu --dtype fp32 --repeat 5
    python benchmarks/pretrain_step.py --preset base --device cuda --dtype bf16 --activation-checkpointing
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch
from timing import interleaved_medians

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.model.masking import compute_mask_indices
from xlsr.rates import SAMPLE_RATE
from xlsr.train.optimizer import build_optimizer, fused_adamw_applies
from xlsr.train.trainer_config import TrainerConfig


def hf_config(cfg: Wav2Vec2Config):
    """The transformers Wav2Vec2Config that builds the same network as `cfg`."""
    from transformers import Wav2Vec2Config as HFConfig

    return HFConfig(
        conv_dim=[d for d, _, _ in cfg.conv_layers], conv_kernel=[k for _, k, _ in cfg.conv_layers],
        conv_stride=[s for _, _, s in cfg.conv_layers], conv_bias=cfg.conv_bias,
        feat_extract_norm="layer" if cfg.extractor_mode == "layer_norm" else "group",
        feat_extract_activation="gelu", hidden_act="gelu",
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.ffn_dim, do_stable_layer_norm=cfg.layer_norm_first,
        hidden_dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout, feat_proj_dropout=cfg.dropout_input,
        feat_quantizer_dropout=cfg.dropout_features, final_dropout=cfg.final_dropout, layerdrop=cfg.layerdrop,
        num_conv_pos_embeddings=cfg.conv_pos, num_conv_pos_embedding_groups=cfg.conv_pos_groups,
        num_codevector_groups=cfg.num_codevector_groups, num_codevectors_per_group=cfg.num_codevectors_per_group,
        codevector_dim=cfg.codevector_dim, proj_codevector_dim=cfg.final_dim,
        contrastive_logits_temperature=cfg.logit_temp, num_negatives=cfg.num_negatives,
        diversity_loss_weight=cfg.diversity_weight, mask_time_prob=cfg.mask_prob,
        mask_time_length=cfg.mask_length, mask_time_min_masks=cfg.min_masks,
        mask_feature_prob=cfg.mask_channel_prob, mask_feature_length=cfg.mask_channel_length,
        layer_norm_eps=cfg.layer_norm_eps, feat_extract_norm_eps=cfg.layer_norm_eps,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10,
                      clock=time.perf_counter) -> float:
    """FLOP/s of a square n x n matmul, best of `reps` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = clock()
        a @ b
        sync(device)
        best = min(best, clock() - t0)
    return 2 * n**3 / best


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of aten.convolution_backward, a grouped convolution's weight gradient counted once.

    torch's own formula (torch.utils.flop_counter.conv_backward_flop, 2.13) counts the weight gradient as a
    convolution of the input with the output gradient over all C_in x C_out channel pairs, `groups` times the
    pairs a grouped convolution has: the positional conv (groups=16) made whole steps count ~16% too many FLOPs.
    """
    from torch.utils.flop_counter import conv_flop_count

    def t(shape):  # batch and channels swapped: the weight gradient as a convolution
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:  # the input gradient, a transposed convolution with the (grouped) weight: counted right
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // groups
    return flops


def count_flops(step, torch_conv_backward: bool = False) -> int:
    """FLOPs (matmul, conv, attention) of one call of `step`, counted by torch's FlopCounterMode with a grouped
    convolution's weight gradient counted once (`conv_backward_flops`); `torch_conv_backward`: torch's own count."""
    from torch.utils.flop_counter import FlopCounterMode

    mapping = {} if torch_conv_backward else {torch.ops.aten.convolution_backward: conv_backward_flops}
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with counter:
        step()
    return counter.get_total_flops()


def activation_bytes(forward, device: torch.device) -> int:
    """Bytes that one call of `forward` allocates and still holds at its end (what backward will need)."""
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        out = forward()
        sync(device)
        held = torch.cuda.memory_allocated(device) - before
    else:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = forward()
        held = sum(e.self_cpu_memory_usage for e in prof.events())
    del out
    return held


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--repeat", "--steps", dest="repeat", type=int, default=5,
                   help="timed steps of each model (interleaved); the median is printed")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--skip-hf", action="store_true", help="time xlsr only")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute activations in backward, in both models")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (compiled in the warm-up)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time in CPU seconds of this process, not wall-clock: steadier on a shared machine "
                        "(use with --threads 1; the peak is then measured the same way)")
    p.add_argument("--optimizer", choices=("default", "example", "loop"), default="default",
                   help="default: torch's fused AdamW in both (xlsr's build_optimizer; transformers' Trainer default); "
                        "example: transformers' side with its pretraining example's per-tensor AdamW; "
                        "loop: torch's per-tensor Adam in both")
    p.add_argument("--flops", action="store_true",
                   help="print each model's FLOPs per step, as counted here and by torch's FlopCounterMode alone "
                        "(which counts a grouped convolution's weight gradient `groups` times), and exit")
    args = p.parse_args(argv)
    clock = time.process_time if args.cpu_time else time.perf_counter

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    torch.manual_seed(args.seed)
    cfg = Wav2Vec2Config.preset(args.preset)
    B, S = args.batch, int(args.seconds * SAMPLE_RATE)
    waveforms = torch.randn(B, S, device=device)
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())

    # One mask for both models, drawn with our sampler (same count per row, fairseq semantics).
    gen = torch.Generator(device=device).manual_seed(args.seed)
    ours = Wav2Vec2ForPreTraining(cfg).to(device).train()
    T = int(ours.wav2vec2.frame_lengths(torch.tensor([S]))[0])
    mask = compute_mask_indices(torch.full((B,), T, device=device), T, cfg.mask_prob, cfg.mask_length,
                                cfg.min_masks, gen)
    M = int(mask.sum(1)[0])
    models = {"xlsr": ours_steps(ours, args, lambda m: m(waveforms, mask_time_indices=mask, generator=gen), autocast)}
    if not args.skip_hf:
        models["transformers"] = hf_steps(cfg, args, device, waveforms, mask, autocast)
    flops = {name: count_flops(eager_step) for name, (_, _, eager_step) in models.items()}
    if args.flops:
        print(f"preset={args.preset} batch={B}x{args.seconds:g}s dtype={args.dtype} frames={T} masked/row={M}")
        for name, (_, _, eager_step) in models.items():
            torch_count = count_flops(eager_step, torch_conv_backward=True)
            print(f"{name:>13}: {flops[name] / 1e9:.2f} GFLOP/step (grouped conv weight gradients counted once); "
                  f"torch's FlopCounterMode alone {torch_count / 1e9:.2f}: ratio {torch_count / flops[name]:.4f}")
        return 0
    memory = {name: activation_bytes(forward, device) for name, (forward, _, _) in models.items()}
    peak = peak_matmul_flops(device, dtype, clock=clock)
    results = interleaved_medians({name: step for name, (_, step, _) in models.items()}, args.repeat,
                                  warmup=args.warmup, clock=clock, sync=lambda: sync(device))
    peak = max(peak, peak_matmul_flops(device, dtype, clock=clock))  # the practical peak: the best of before and after

    audio = B * S / SAMPLE_RATE
    print(f"preset={args.preset} batch={B}x{args.seconds:g}s device={args.device} dtype={args.dtype} "
          f"threads={torch.get_num_threads()} median of {args.repeat} interleaved steps (+{args.warmup} warmup) "
          f"frames={T} masked/row={M} activation_checkpointing={args.activation_checkpointing} "
          f"compile={args.compile} optimizer={args.optimizer}{' (CPU time)' if args.cpu_time else ''}")
    print(f"peak matmul ({args.dtype}, 2048^2): {peak / 1e9:.1f} GFLOP/s")
    for name, sec in results.items():
        print(f"{name:>13}: {sec:.3f} s/step  {audio / sec:7.1f} audio-s/s  "
              f"{flops[name] / 1e9:7.1f} GFLOP/step  {flops[name] / sec / 1e9:6.1f} GFLOP/s "
              f"= {flops[name] / sec / peak:.1%} of peak  activations {memory[name] / 2**20:7.1f} MiB")
    if "transformers" in results:
        print(f"speed-up xlsr / transformers: {results['transformers'] / results['xlsr']:.2f}x; "
              f"activation memory xlsr / transformers: {memory['xlsr'] / memory['transformers']:.2f}x")
    return 0


def ours_steps(model: torch.nn.Module, args, call, autocast):
    """(forward, step, eager step) closures of xlsr's model; `call(model)` runs its forward on the batch."""
    model.set_activation_checkpointing(args.activation_checkpointing)
    if args.optimizer == "loop":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    else:
        opt = build_optimizer(model, TrainerConfig(lr=1e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6))
    run = torch.compile(model) if args.compile else model

    def forward(m=run):
        with autocast:
            return call(m)

    def step(m=run):
        out = forward(m)
        (out.loss / out.num_masked).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return forward, step, lambda: step(model)


def hf_steps(cfg: Wav2Vec2Config, args, device: torch.device, waveforms: torch.Tensor, mask: torch.Tensor, autocast):
    """(forward, step, eager step) closures of transformers' model with the same mask and K negatives."""
    from transformers import Wav2Vec2ForPreTraining as HFPreTraining
    from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

    B, T = mask.shape
    M = int(mask.sum(1)[0])
    hf = HFPreTraining(hf_config(cfg)).to(device).train()
    hf.set_gumbel_temperature(cfg.latent_temp[0])
    if args.activation_checkpointing:  # transformers 5 renamed gradient_checkpointing_enable
        getattr(hf, "activation_checkpointing_enable", hf.gradient_checkpointing_enable)()
    opt = hf_optimizer(list(hf.parameters()), args.optimizer, lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
    negs = torch.as_tensor(_sample_negative_indices((B, T), cfg.num_negatives, mask.cpu().numpy()), device=device)
    run = torch.compile(hf) if args.compile else hf

    def forward(m=run):
        with autocast:
            return m(waveforms, mask_time_indices=mask, sampled_negative_indices=negs)

    def step(m=run):
        out = forward(m)
        (out.loss / M / B).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return forward, step, lambda: step(hf)


def hf_optimizer(params: list[torch.nn.Parameter], kind: str, **hyper) -> torch.optim.Optimizer:
    """transformers' side's optimizer: fused AdamW as its Trainer's default (`default`), its pretraining example's
    per-tensor AdamW (`example`), or torch's per-tensor Adam (`loop`)."""
    if kind == "loop":
        return torch.optim.Adam(params, **hyper)
    fused = kind == "default" and fused_adamw_applies(params)
    return torch.optim.AdamW(params, fused=fused or None, **hyper)


if __name__ == "__main__":
    raise SystemExit(main())
