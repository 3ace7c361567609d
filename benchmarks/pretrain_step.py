"""Time one pretraining step (forward + backward + Adam) of xlsr and of transformers' Wav2Vec2ForPreTraining.

Both models get the identical configuration (random weights, offline), the same batch, the same mask
and negatives of the same K. Prints audio-seconds per second for each, their ratio, and the achieved
FLOP/s as a share of the measured peak matmul FLOP/s of this machine, and the activation memory: bytes the
forward pass allocates and still holds when backward starts. `--activation-checkpointing` turns on
recomputation in both (ours: `set_activation_checkpointing`; transformers: `activation_checkpointing_enable`).

    python benchmarks/pretrain_step.py --preset tiny --batch 8 --seconds 4 --device cpu --dtype fp32 --steps 5
    python benchmarks/pretrain_step.py --preset base --device cuda --dtype bf16 --activation-checkpointing
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import torch

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.model.masking import compute_mask_indices
from xlsr.rates import SAMPLE_RATE


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


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a square n x n matmul, best of `reps` (the machine's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
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


def time_steps(step, device: torch.device, warmup: int, steps: int) -> float:
    """Median seconds per call of `step` after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--skip-hf", action="store_true", help="time xlsr only")
    p.add_argument("--activation-checkpointing", action="store_true",
                   help="recompute activations in backward, in both models")
    args = p.parse_args(argv)

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
    ours = Wav2Vec2ForPreTraining(cfg).to(device).train()
    ours.set_activation_checkpointing(args.activation_checkpointing)
    T = int(ours.wav2vec2.frame_lengths(torch.tensor([S]))[0])
    gen = torch.Generator(device=device).manual_seed(args.seed)
    mask = compute_mask_indices(torch.full((B,), T, device=device), T, cfg.mask_prob, cfg.mask_length,
                                cfg.min_masks, gen)
    M = int(mask.sum(1)[0])
    opt = torch.optim.Adam(ours.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)

    def ours_forward():
        with autocast:
            return ours(waveforms, mask_time_indices=mask, generator=gen)

    def ours_step():
        out = ours_forward()
        (out.loss / out.num_masked).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    results = {}
    flops = {"xlsr": count_flops(ours_step)}
    memory = {"xlsr": activation_bytes(ours_forward, device)}
    results["xlsr"] = time_steps(ours_step, device, args.warmup, args.steps)

    if not args.skip_hf:
        from transformers import Wav2Vec2ForPreTraining as HFPreTraining
        from transformers.models.wav2vec2.modeling_wav2vec2 import _sample_negative_indices

        hf = HFPreTraining(hf_config(cfg)).to(device).train()
        hf.set_gumbel_temperature(cfg.latent_temp[0])
        if args.activation_checkpointing:  # transformers 5 renamed gradient_checkpointing_enable
            getattr(hf, "activation_checkpointing_enable", hf.gradient_checkpointing_enable)()
        hf_opt = torch.optim.Adam(hf.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6)
        mask_np = mask.cpu().numpy()
        negs = torch.as_tensor(_sample_negative_indices((B, T), cfg.num_negatives, mask_np), device=device)

        def hf_forward():
            with autocast:
                return hf(waveforms, mask_time_indices=mask, sampled_negative_indices=negs)

        def hf_step():
            out = hf_forward()
            (out.loss / M / B).backward()
            hf_opt.step()
            hf_opt.zero_grad(set_to_none=True)

        flops["transformers"] = count_flops(hf_step)
        memory["transformers"] = activation_bytes(hf_forward, device)
        results["transformers"] = time_steps(hf_step, device, args.warmup, args.steps)

    peak = peak_matmul_flops(device, dtype)
    audio = B * S / SAMPLE_RATE
    print(f"preset={args.preset} batch={B}x{args.seconds:g}s device={args.device} dtype={args.dtype} "
          f"threads={torch.get_num_threads()} steps={args.steps} (+{args.warmup} warmup) frames={T} masked/row={M} "
          f"activation_checkpointing={args.activation_checkpointing}")
    print(f"peak matmul ({args.dtype}, 2048^2): {peak / 1e9:.1f} GFLOP/s")
    for name, sec in results.items():
        print(f"{name:>13}: {sec:.3f} s/step  {audio / sec:7.1f} audio-s/s  "
              f"{flops[name] / 1e9:7.1f} GFLOP/step  {flops[name] / sec / 1e9:6.1f} GFLOP/s "
              f"= {flops[name] / sec / peak:.1%} of peak  activations {memory[name] / 2**20:7.1f} MiB")
    if "transformers" in results:
        print(f"speed-up xlsr / transformers: {results['transformers'] / results['xlsr']:.2f}x; "
              f"activation memory xlsr / transformers: {memory['xlsr'] / memory['transformers']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
