"""Time one pretraining step (forward + backward + Adam) of xlsr and of transformers' Wav2Vec2ForPreTraining.

Both models get the identical configuration (random weights, offline), the same batch, the same mask
and negatives of the same K. The steps are interleaved (one xlsr step, one transformers step, --repeat times,
after --warmup untimed ones), so machine noise hits both alike; the median of the --repeat runs is printed for
each, as audio-seconds per second, their ratio, and the achieved FLOP/s as a share of the measured peak matmul
FLOP/s of this machine, and the activation memory: bytes the forward pass allocates and still holds when
backward starts. `--activation-checkpointing` turns on recomputation in both (ours: `set_activation_checkpointing`;
transformers: `activation_checkpointing_enable`). `--compile` runs both models through torch.compile (the
compilation happens in the warm-up steps). Each model steps with its library's own default optimizer
(`--optimizer default`): xlsr's `build_optimizer` (AdamW, torch's fused kernel) and the AdamW of transformers'
pretraining example (run_wav2vec2_pretraining_no_trainer.py: torch.optim.AdamW, per tensor on the CPU), with
wav2vec 2.0's betas and eps; `--optimizer loop` gives both torch's per-tensor Adam, as before 2026-12-05.

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
from xlsr.train.optimizer import build_optimizer
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


def count_flops(step) -> int:
    """FLOPs (matmul, conv, attention) of one call of `step`, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
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
    p.add_argument("--optimizer", choices=("default", "loop"), default="default",
                   help="default: each library's own (xlsr: fused AdamW; transformers' example: per-tensor AdamW); "
                        "loop: torch's per-tensor Adam in both")
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
    opt = (torch.optim.Adam if args.optimizer == "loop" else torch.optim.AdamW)(hf.parameters(), lr=1e-4,
                                                                                betas=(0.9, 0.98), eps=1e-6)
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


if __name__ == "__main__":
    raise SystemExit(main())
