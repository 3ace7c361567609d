"""The layer-norm CNN's convolutions, forward + backward, in every implementation side by side: which one to use.

For each layer of the standard CNN (kernel/stride 10/5, 3/2 x 4, 2/2 x 2) at the given width, times the
channels-last convolution (B, S, C_in) -> (B, T, C_out) with its backward (input and weight gradients) in:

- strided:        the former code: a matmul over an as_strided window view; autograd's backward of the view
                  scatters the overlapping windows back with index_add_ (the reference to beat);
- conv1d:         F.conv1d on the (B, C, S) layout, with the two layout copies around it;
- conv:           xlsr's "conv": a 2-D convolution over the channels_last view, autograd's convolution backward;
- conv_mm_weight: xlsr's "conv_mm_weight": the same, with the weight gradient as one im2col matmul.

Each repetition runs every implementation once, in turn (so machine noise hits them alike); the table shows the
median milliseconds and, last, the whole CNN. model/channels_last_conv.py's CONV_IMPL holds the choice per
device type and compute dtype; this script says whether the choice still holds here.

    python benchmarks/cnn_conv.py --channels 256 --batch 8 --seconds 4 --threads 2
    python benchmarks/cnn_conv.py --device cuda --dtype bf16 --channels 512 --batch 8 --seconds 15
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from xlsr.model.channels_last_conv import CONV_IMPL, IMPLEMENTATIONS, conv1d_channels_last, strided_windows
from xlsr.model.config import standard_conv_layers


def strided(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int) -> torch.Tensor:
    """The former implementation: windows view @ weight, differentiated through the view by autograd."""
    c_out, c_in, kernel = w.shape
    y = strided_windows(x.contiguous(), kernel, stride) @ w.permute(2, 1, 0).reshape(kernel * c_in, c_out)
    return y if b is None else y + b


def conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int) -> torch.Tensor:
    """F.conv1d on (B, C, S), copied back to a contiguous (B, T, C)."""
    return F.conv1d(x.transpose(1, 2), w, b, stride=stride).transpose(1, 2).contiguous()


def candidates() -> dict:
    impls = {"strided": strided, "conv1d": conv1d}
    for name in IMPLEMENTATIONS:
        impls[name] = lambda x, w, b, s, name=name: conv1d_channels_last(x, w, b, s, impl=name)
    return impls


def make_clock(device: torch.device, cpu_time: bool):
    """Wall-clock seconds (after a CUDA sync), or this process's CPU seconds (steadier on a shared machine)."""
    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.process_time() if cpu_time else time.perf_counter()
    return clock


def time_layer(conv, x, w, b, stride, autocast, clock) -> tuple[float, float]:
    """Seconds of one forward and of its backward (input, weight and bias gradients)."""
    t0 = clock()
    with autocast:
        y = conv(x, w, b, stride)
    t1 = clock()
    y.backward(torch.ones_like(y))
    t2 = clock()
    for t in (x, w, b):
        t.grad = None
    return t1 - t0, t2 - t1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=256, help="CNN width (256: tiny, 512: every other preset)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: under autocast")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--cpu-time", action="store_true",
                   help="CPU seconds of this process instead of wall-clock (a shared machine; use --threads 1)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = make_clock(device, args.cpu_time)
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if args.dtype == "bf16"
                else contextlib.nullcontext())
    impls = candidates()
    g = torch.Generator().manual_seed(0)
    S, c_in = int(args.seconds * 16000), 1
    rows, totals = [], {name: [0.0] * args.repeat for name in impls}
    for c_out, kernel, stride in standard_conv_layers(args.channels):
        x = torch.randn(args.batch, S, c_in, generator=g).to(device).requires_grad_(c_in > 1)
        w = torch.randn(c_out, c_in, kernel, generator=g).div_((c_in * kernel) ** 0.5).to(device).requires_grad_()
        b = torch.randn(c_out, generator=g).to(device).requires_grad_()
        for name in impls:  # warm-up (oneDNN / cuDNN pick and compile their kernels on first use)
            time_layer(impls[name], x, w, b, stride, autocast, clock)
        times = {name: [] for name in impls}
        for r in range(args.repeat):
            for name, conv in impls.items():
                fwd, bwd = time_layer(conv, x, w, b, stride, autocast, clock)
                times[name].append((fwd, bwd))
                totals[name][r] += fwd + bwd
        rows.append((f"{c_in}->{c_out} k{kernel}/s{stride} S={S}", times))
        S, c_in = (S - kernel) // stride + 1, c_out

    print(f"layer-norm CNN convolutions, forward + backward, width {args.channels}, batch {args.batch} x "
          f"{args.seconds:g} s, device={args.device} dtype={args.dtype} threads={torch.get_num_threads()}, "
          f"{'CPU' if args.cpu_time else 'wall'} time, median of {args.repeat} (ms: forward + backward)")
    print(f"{'layer':<28}" + "".join(f"{name:>22}" for name in impls))
    for label, times in rows:
        cells = []
        for name in impls:
            fwd = statistics.median(f for f, _ in times[name]) * 1e3
            bwd = statistics.median(b for _, b in times[name]) * 1e3
            cells.append(f"{fwd:9.1f} + {bwd:9.1f}")
        print(f"{label:<28}" + "".join(f"{c:>22}" for c in cells))
    whole = {name: statistics.median(t) * 1e3 for name, t in totals.items()}
    print(f"{'whole CNN (ms)':<28}" + "".join(f"{whole[name]:>22.1f}" for name in impls))
    print(f"{'speed-up vs strided':<28}" + "".join(f"{whole['strided'] / whole[name]:>21.2f}x" for name in impls))
    chosen = CONV_IMPL.get((device.type, torch.bfloat16 if args.dtype == "bf16" else torch.float32), "conv")
    print(f"fastest here: {min(whole, key=whole.get)}; CONV_IMPL picks {chosen} for {device.type} {args.dtype}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
