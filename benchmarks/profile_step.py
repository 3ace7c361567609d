"""The top ops of one training step under torch.profiler: where the time goes, for whoever wants more speed.

Profiles xlsr's pretraining step (forward + backward + AdamW, as benchmarks/pretrain_step.py times it) or the
CTC fine-tuning step / inference (as benchmarks/finetune_infer.py times them), each stepping with the optimizer
xlsr trains with (`build_optimizer`: torch's fused AdamW on the CPU and CUDA), and prints the ops that take
the most self time (time spent in the op itself, not in the ops it calls), each as a share of the step, and
where the forward + backward makes the host wait for the device (on CUDA: torch.cuda.set_sync_debug_mode; on
the CPU: the scalar reads that would).

    python benchmarks/profile_step.py --preset tiny --batch 8 --seconds 4 --threads 2
    python benchmarks/profile_step.py --what finetune --preset base --threads 2 --top 20
    python benchmarks/profile_step.py --device cuda --dtype bf16 --preset base --sort total
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import traceback
import warnings
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.rates import SAMPLE_RATE
from xlsr.train.optimizer import build_optimizer
from xlsr.train.trainer_config import TrainerConfig

TORCH_DIR = str(Path(torch.__file__).parent)


def pretrain_step(cfg: Wav2Vec2Config, B: int, S: int, device: torch.device, autocast, seed: int):
    """(forward + backward, optimizer step) closures of a pretraining step; the model draws its own mask and
    negatives from a generator, as in training."""
    model = Wav2Vec2ForPreTraining(cfg).to(device).train()
    opt = build_optimizer(model, TrainerConfig(lr=1e-4, adam_betas=(0.9, 0.98), adam_eps=1e-6))
    waveforms = torch.randn(B, S, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)

    def forward_backward():
        with autocast:
            out = model(waveforms, generator=gen)
        (out.loss / out.num_masked).backward()

    return forward_backward, lambda: optimizer_step(opt)


def optimizer_step(opt: torch.optim.Optimizer) -> None:
    opt.step()
    opt.zero_grad(set_to_none=True)


def finetune_step(cfg: Wav2Vec2Config, B: int, S: int, device: torch.device, autocast, seed: int, infer: bool):
    """(forward + backward, optimizer step) of a CTC fine-tuning step (CNN frozen, SpecAugment on), or
    (inference call, nothing), as finetune_infer.py runs them."""
    cfg.mask_prob, cfg.mask_channel_prob, cfg.layerdrop = 0.3, 0.1, 0.0
    model = Wav2Vec2ForCTC(cfg, vocab_size=40).to(device)
    model.freeze_feature_encoder()
    opt = build_optimizer(model, TrainerConfig(lr=1e-5))  # the trainable parameters only
    waveforms = torch.randn(B, S, device=device)
    lengths = torch.full((B,), S)
    labels = torch.randint(1, 40, (B, int(S / SAMPLE_RATE * 12)))

    def forward_backward():
        model.train()
        with autocast:
            loss = model(waveforms, lengths, labels).loss
        loss.backward()

    def inference():
        model.eval()
        with torch.inference_mode(), autocast:
            model(waveforms, lengths)

    return (inference, lambda: None) if infer else (forward_backward, lambda: optimizer_step(opt))


def top_ops_table(prof, device: torch.device, top: int, sort: str) -> str:
    """The `top` ops by self (or total) time, with their share of the step's summed self time."""
    use_cuda = device.type == "cuda"
    events = prof.key_averages()
    self_attr = "self_device_time_total" if use_cuda else "self_cpu_time_total"
    total_attr = "device_time_total" if use_cuda else "cpu_time_total"
    whole = sum(getattr(e, self_attr) for e in events) or 1.0
    key = self_attr if sort == "self" else total_attr
    rows = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:top]
    unit = "device" if use_cuda else "CPU"
    lines = [f"{'op':<44} {'self ms':>9} {'self %':>7} {'total ms':>9} {'calls':>6}",
             f"(self {unit} time of all ops: {whole / 1e3:.1f} ms)"]
    for e in rows:
        lines.append(f"{e.key[:44]:<44} {getattr(e, self_attr) / 1e3:>9.1f} {getattr(e, self_attr) / whole:>7.1%} "
                     f"{getattr(e, total_attr) / 1e3:>9.1f} {e.count:>6}")
    return "\n".join(lines)


class _ScalarReads(TorchDispatchMode):
    """Counts aten::_local_scalar_dense (.item(), int(), bool()) by the innermost call site outside torch."""

    def __init__(self):
        super().__init__()
        self.sites: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.sites[_call_site()] += 1
        return func(*args, **(kwargs or {}))


def _call_site() -> str:
    """file:line of the innermost frame outside torch and this script."""
    for f in reversed(traceback.extract_stack()):
        if not f.filename.startswith(TORCH_DIR) and f.filename != __file__:
            return f"{Path(f.filename).name}:{f.lineno}"
    return "?"


def host_syncs(forward_backward, device: torch.device) -> collections.Counter:
    """Where the model's forward + backward makes the host wait for the device, by call site.

    On CUDA: every synchronizing call torch.cuda.set_sync_debug_mode reports. On the CPU, where nothing
    synchronizes, the scalar reads that would (some read CPU-resident tensors that stay on the CPU in a GPU run:
    tests/model/test_host_syncs.py lists them).
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                forward_backward()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return collections.Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught
                                   if "synchroniz" in str(w.message))
    with _ScalarReads() as reads:
        forward_backward()
    return reads.sites


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--what", choices=["pretrain", "finetune", "infer"], default="pretrain")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=1, help="profiled steps (after --warmup unprofiled ones)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--sort", choices=["self", "total"], default="self")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    cfg = Wav2Vec2Config.preset(args.preset)
    B, S = args.batch, int(args.seconds * SAMPLE_RATE)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    if args.what == "pretrain":
        forward_backward, optimizer_step = pretrain_step(cfg, B, S, device, autocast, args.seed)
    else:
        forward_backward, optimizer_step = finetune_step(cfg, B, S, device, autocast, args.seed,
                                                         infer=args.what == "infer")

    def step():
        forward_backward()
        optimizer_step()

    for _ in range(args.warmup):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    print(f"{args.what} step, preset={args.preset} batch={B}x{args.seconds:g}s device={args.device} "
          f"dtype={args.dtype} threads={torch.get_num_threads()} profiled steps={args.steps}, top {args.top} by "
          f"{args.sort} time")
    print(top_ops_table(prof, device, args.top, args.sort))
    syncs = host_syncs(forward_backward, device)
    kind = "synchronizing calls (set_sync_debug_mode)" if device.type == "cuda" else "scalar reads (.item/int/bool)"
    print(f"host syncs of the forward + backward, {kind}: {sum(syncs.values())}"
          + "".join(f"\n  {n} x {site}" for site, n in syncs.most_common()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
