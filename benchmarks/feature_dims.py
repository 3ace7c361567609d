"""Is a feature collapse a few loud channels, or a few directions? Effective dimensions of checkpoints' CNN features.

For each checkpoint and each labeled manifest (held-out audio), runs the model without masks over the first
`--utts` utterances and prints, for the CNN features after `feature_norm` (what the quantizer and the projection
read), pooled over all frames:

- `cov-PR`: the participation ratio of the covariance eigenvalues (the validation log's `feature_eff_dim`);
- `corr-PR`: the same after standardising every channel to unit variance (the correlation matrix). A few loud
  channels lower cov-PR but not corr-PR; features that really lie along a few directions lower both;
- `spread`: the loudest channel's standard deviation over the median one (`feature_scale_spread`);
- `top-5`: the share of the variance in the 5 leading principal components.

Before the models, the same numbers for each manifest's own input: its log-mel spectrum (80 bands, 25 ms windows,
20 ms hop: the CNN's frame rate), log(power + `--floor`). That row is the reference the CNN's numbers need: the
dimension the audio itself has, as a speech front end sees it (random weights spread their variance over many
more directions than that, so "a fraction of random weights' dimension" is not the reference).

Each model row also says how the CNN features relate to that spectrum, frame for frame (the same 25 ms windows),
by a linear map fit on the first half of the utterances and scored on the second (ridge, inputs standardised;
R² over all output dimensions, weighted by their variance):

- `R² mel→CNN`: how much of the CNN features is a linear function of the log-mel spectrum;
- `R² CNN→mel`: how much of the log-mel spectrum can be read linearly off the CNN features (what of the audio's
  spectrum a collapse keeps).

    python benchmarks/feature_dims.py --manifest probe_eval/it/test.jsonl --manifest probe_eval/ta/test.jsonl \
        --model random=random_init --model release=src/xlsr/released/tiny-multilingual
"""

from __future__ import annotations

import argparse
import sys

import torch

from xlsr.data.audio import load_audio
from xlsr.data.log_mel import log_mel, mel_filterbank
from xlsr.data.manifest import read_manifest
from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.model.feature_health import channel_scale_spread, effective_dimension


def named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    return (name, path) if sep else (text, text)


def cnn_frames(model: torch.nn.Module, waveforms: list[str]) -> torch.Tensor:
    """(N, C) float64 CNN features after feature_norm, every frame of every audio file (one at a time, no padding)."""
    encoder = getattr(model, "wav2vec2", model)
    normalize = bool(encoder.config.normalize_waveform)  # as the model was trained (and as `xlsr probe` feeds it)
    waveforms = [torch.from_numpy(load_audio(path, normalize=normalize)) for path in waveforms]
    with torch.inference_mode():
        return torch.cat([encoder(w[None]).extract_features[0] for w in waveforms]).double()


def log_mel_frames(waveforms: list[str], floor: float) -> torch.Tensor:
    """(N, 80) float64 log-mel frames of every audio file as read (not normalized): data/log_mel.py's windows."""
    bank = mel_filterbank()
    return torch.cat([log_mel(torch.from_numpy(load_audio(path, normalize=False)), floor, bank) for path in waveforms])


def dims(frames: torch.Tensor) -> dict[str, float]:
    standardised = (frames - frames.mean(0)) / frames.std(0).clamp_min(1e-12)
    eig = torch.linalg.eigvalsh(torch.cov(frames.T)).flip(0)
    return {"cov-PR": effective_dimension(frames), "corr-PR": effective_dimension(standardised),
            "spread": channel_scale_spread(frames), "top-5": float(eig[:5].sum() / eig.sum())}


def linear_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
              ridge: float = 1e-3) -> float:
    """Held-out R² of a ridge regression y ≈ standardised(x) W + b fit on (x_fit, y_fit), over all of y's columns."""
    mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-9)
    x = (x_fit - mean) / std
    gram = x.T @ x / len(x) + ridge * torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(gram, x.T @ (y_fit - y_fit.mean(0)) / len(x))
    residual = y_test - (((x_test - mean) / std) @ weights + y_fit.mean(0))
    return 1.0 - float(residual.square().sum() / (y_test - y_test.mean(0)).square().sum())


def print_row(manifest: str, name: str, frames: tuple[torch.Tensor, torch.Tensor],
              mels: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """One row: the dimensions of the pooled (fit, test) frames; with the input's `mels`, the R² both ways."""
    d = dims(torch.cat(frames))
    r2 = "" if mels is None else (f" {linear_r2(mels[0], frames[0], mels[1], frames[1]):10.3f}"
                                  f" {linear_r2(frames[0], mels[0], frames[1], mels[1]):10.3f}")
    print(f"{manifest[-28:]:28s} {name:13s} {sum(map(len, frames)):7d} {d['cov-PR']:7.1f} {d['corr-PR']:8.1f} "
          f"{d['spread']:7.1f} {d['top-5']:6.2f}{r2}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", type=named, required=True, help="NAME=CHECKPOINT (repeatable)")
    parser.add_argument("--manifest", action="append", required=True, help="a manifest of held-out audio (repeatable)")
    parser.add_argument("--utts", type=int, default=40, help="utterances per manifest (default 40)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor", type=float, default=1e-3,
                        help="added to the mel power before the log, in the input's row (default 1e-3)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        models = {name: load_pretrained(path).model.eval() for name, path in args.model}
        print(f"{'manifest':28s} {'model':13s} {'frames':>7s} {'cov-PR':>7s} {'corr-PR':>8s} {'spread':>7s} "
              f"{'top-5':>6s} {'R² mel→CNN':>10s} {'R² CNN→mel':>10s}")
        for manifest in args.manifest:
            waveforms = [utt.audio for utt in read_manifest(manifest)[: args.utts]]
            halves = (waveforms[: len(waveforms) // 2], waveforms[len(waveforms) // 2:])
            mels = tuple(log_mel_frames(half, args.floor) for half in halves)
            print_row(manifest, "input log-mel", mels)
            for name, model in models.items():
                print_row(manifest, name, tuple(cnn_frames(model, half) for half in halves), mels)
    except XlsrError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
