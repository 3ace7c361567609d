"""The group-norm CNN (wav2vec 2.0 Base's) in both layouts: (B, C, T) `conv1d` against channels-last, per dtype.

Times the `base` preset's CNN (or another preset's, `--preset`) without a graph (a frozen CNN: fine-tuning and
inference) and forward + backward, in fp32 and under bf16 autocast, with the layout forced each way and, for
channels-last with a graph, each convolution implementation. feature_encoder.GROUP_NORM_CHANNELS_LAST and
channels_last_conv.CONV_IMPL hold the choices; this script says whether they still hold on this machine. The
cases of one row (dtype, graph or not) are timed in turn, --repeat rounds after a warm-up round, so a load that
comes and goes on a shared machine reaches them alike; the median is printed.

    python benchmarks/cnn_layouts.py [--preset base] [--batch 4] [--seconds 4] [--threads 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import interleaved_medians

import xlsr.model.channels_last_conv as channels_last_conv
from xlsr.model import Wav2Vec2Config
from xlsr.model.feature_encoder import GROUP_NORM_CHANNELS_LAST, FeatureEncoder


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
          f"CPU time, median of {args.repeat} interleaved rounds (ms)")
    saved_impl = dict(channels_last_conv.CONV_IMPL)
    for dtype in (torch.float32, torch.bfloat16):
        name = "bf16" if dtype == torch.bfloat16 else "fp32"
        for graph in (False, True):
            cases = [("(B, C, T) conv1d", False, None)]
            cases += [(f"channels-last {impl}", True, impl) for impl in
                      (channels_last_conv.IMPLEMENTATIONS if graph else ("conv",))]

            def run(channels_last, impl, graph=graph, dtype=dtype):
                encoder.channels_last = channels_last
                channels_last_conv.CONV_IMPL[("cpu", dtype)] = impl or saved_impl.get(("cpu", dtype), "conv")
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16), \
                        torch.set_grad_enabled(graph):
                    out = encoder(waveforms)
                if graph:
                    out.float().square().mean().backward()
                    encoder.zero_grad(set_to_none=True)

            medians = interleaved_medians({label: (lambda c=c, i=i: run(c, i)) for label, c, i in cases}, args.repeat,
                                          clock=time.process_time)
            for label, sec in medians.items():
                print(f"{name}  {'forward + backward' if graph else 'no graph':18s}  {label:30s} {1000 * sec:8.0f}",
                      flush=True)
            channels_last_conv.CONV_IMPL.clear()
            channels_last_conv.CONV_IMPL.update(saved_impl)
            encoder.channels_last = None
        chosen = ("cpu", dtype) in GROUP_NORM_CHANNELS_LAST
        impl = channels_last_conv.CONV_IMPL.get(("cpu", dtype), "conv")
        print(f"{name}: the code picks {'channels-last' if chosen else '(B, C, T) conv1d'}"
              + (f" with {impl}" if chosen else ""))


if __name__ == "__main__":
    main()
