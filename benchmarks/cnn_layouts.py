"""The group-norm CNN (wav2vec 2.0 Base's) in both layouts: (B, C, T) `conv1d` against channels-last, per dtype.

Times the `base` preset's CNN (or another preset's, `--preset`) without a graph (a frozen CNN: fine-tuning and
inference) and forward + backward, in fp32 and under bf16 autocast, with the layout forced each way and, for
channels-last with a graph, each convolution implementation. feature_encoder.GROUP_NORM_CHANNELS_LAST and
channels_last_conv.CONV_IMPL hold the choices; this script says whether they still hold on this machine.

    python benchmarks/cnn_layouts.py [--preset base] [--batch 4] [--seconds 4] [--threads 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch

import xlsr.model.channels_last_conv as channels_last_conv
from xlsr.model import Wav2Vec2Config
from xlsr.model.feature_encoder import GROUP_NORM_CHANNELS_LAST, FeatureEncoder


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="base")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = Wav2Vec2Config.preset(args.preset)
    config.extractor_mode, config.conv_bias = "group_norm", False
    encoder = FeatureEncoder(config)
    waveforms = torch.randn(args.batch, int(args.seconds * 16000))
    print(f"group-norm CNN of `{args.preset}`, {args.batch} x {args.seconds:g} s, {args.threads} thread(s), "
          f"CPU time, best of {args.repeat} (ms)")
    saved_impl = dict(channels_last_conv.CONV_IMPL)
    for dtype in (torch.float32, torch.bfloat16):
        name = "bf16" if dtype == torch.bfloat16 else "fp32"
        for graph in (False, True):
            cases = [("(B, C, T) conv1d", False, None)]
            cases += [(f"channels-last {impl}", True, impl) for impl in
                      (channels_last_conv.IMPLEMENTATIONS if graph else ("conv",))]
            for label, channels_last, impl in cases:
                encoder.channels_last = channels_last
                if impl is not None:
                    channels_last_conv.CONV_IMPL[("cpu", dtype)] = impl

                def run(graph=graph, dtype=dtype):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16), \
                            torch.set_grad_enabled(graph):
                        out = encoder(waveforms)
                    if graph:
                        out.float().square().mean().backward()
                        encoder.zero_grad(set_to_none=True)

                ms = 1000 * best_of(run, args.repeat)
                print(f"{name}  {'forward + backward' if graph else 'no graph':18s}  {label:30s} {ms:8.0f}", flush=True)
                channels_last_conv.CONV_IMPL.clear()
                channels_last_conv.CONV_IMPL.update(saved_impl)
        chosen = ("cpu", dtype) in GROUP_NORM_CHANNELS_LAST
        impl = channels_last_conv.CONV_IMPL.get(("cpu", dtype), "conv")
        print(f"{name}: the code picks {'channels-last' if chosen else '(B, C, T) conv1d'}"
              + (f" with {impl}" if chosen else ""))


if __name__ == "__main__":
    main()
