"""One AdamW step over a preset's parameters: the fused kernel xlsr builds (`train.optimizer.build_optimizer`)
against torch's per-tensor loop (torch.optim.AdamW's CPU default) and its foreach variant, side by side.

The parameters are those of `Wav2Vec2ForPreTraining` for the preset, with random gradients; the three
optimizers step in turn (interleaved, --repeat times after one warm-up each), and the median is printed with the
loop's time over each. On CUDA the fused kernel is compared the same way (--device cuda).

    .venv/bin/python benchmarks/optimizer_step.py [--preset base] [--repeat 7] [--threads 1] [--cpu-time]
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import interleaved_medians

from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.train.optimizer import build_optimizer
from xlsr.train.trainer_config import TrainerConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="base")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--repeat", type=int, default=7, help="timed steps of each optimizer (interleaved)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu-time", action="store_true", help="CPU seconds of this process instead of wall-clock")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clock = time.process_time if args.cpu_time else time.perf_counter
    device = torch.device(args.device)
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset(args.preset)).to(device)
    for q in model.parameters():
        q.grad = torch.randn_like(q) * 1e-3
    cfg = TrainerConfig(lr=1e-4)
    ours = build_optimizer(model, cfg)
    plain = [{k: v for k, v in g.items() if k not in ("fused", "foreach")} for g in ours.param_groups]
    optimizers = {
        f"xlsr ({'fused' if ours.defaults['fused'] else 'not fused'})": ours,
        "per-tensor loop": torch.optim.AdamW(plain, lr=cfg.lr, foreach=False),
        "foreach": torch.optim.AdamW(plain, lr=cfg.lr, foreach=True),
    }
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # one untimed step each first: the optimizer state is allocated there
    medians = interleaved_medians({name: opt.step for name, opt in optimizers.items()}, args.repeat, clock=clock,
                                  sync=sync)
    n = sum(q.numel() for q in model.parameters())
    print(f"preset {args.preset}: {n / 1e6:.1f}M parameters in {len(list(model.parameters()))} tensors, "
          f"{args.device}, {torch.get_num_threads()} thread(s), median of {args.repeat} interleaved steps, "
          f"{'CPU' if args.cpu_time else 'wall'} time")
    loop = medians["per-tensor loop"]
    for name, med in medians.items():
        print(f"{name:<16} {med * 1000:8.1f} ms   loop / this: {loop / med:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
