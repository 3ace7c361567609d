"""Loading a large checkpoint: xlsr.load_pretrained vs transformers' from_pretrained, side by side.

Builds a random-weight checkpoint of a large shape itself (default xls-r-1b: 965M parameters, a 3.9 GB
Hugging Face directory), once, under --dir. Each side then runs in its own fresh process (so the two
never share memory): load the directory, run one forward pass of --seconds of audio through the
encoder; its wall time (after imports) and peak resident memory (ru_maxrss, which counts the pages of
memory-mapped files that were touched) and peak anonymous memory (RssAnon sampled every 20 ms: what
cannot be dropped and re-read from the file) are printed with the ratio xlsr / transformers.

With --convert it also writes a fairseq-format .pt of the same weights and measures
`xlsr convert FILE.pt OUT --to hf` alone (transformers has no such command to compare with).

    .venv/bin/python benchmarks/load_large.py [--preset xls-r-1b] [--dir /tmp/xlsr_load_large]
        [--seconds 1] [--repeat 3] [--threads 2] [--convert] [--rebuild]

--preset: any Wav2Vec2Config preset (tiny, base, large, xlsr-53, xls-r-300m, xls-r-1b, xls-r-2b);
--repeat: runs per side (median time, largest memory); --threads: torch threads in each child;
--rebuild: write the checkpoint again even if --dir holds one.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

GB = 1e9


# ---------------------------------------------------------------------------- building the checkpoint
def _random_tensor(name: str, meta: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    if "norm" in name and name.endswith("weight") or name.endswith("original0"):
        return torch.ones(meta.shape)  # norm scales and weight-norm magnitudes near what training gives
    if name.endswith("bias"):
        return torch.zeros(meta.shape)
    return torch.randn(meta.shape, generator=g) * 0.02


def build_hf_dir(preset: str, out: Path) -> None:
    """A random-weight HF Wav2Vec2ForPreTraining directory of the preset's shape, one tensor in memory at a time."""
    from xlsr.interop.hf_config import config_to_hf
    from xlsr.interop.hf_keys import key_table, rename
    from xlsr.interop.hf_tokenizer import hf_preprocessor_config
    from xlsr.interop.safetensors_file import safetensors_header
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

    cfg = Wav2Vec2Config.preset(preset)
    with torch.device("meta"):
        meta = Wav2Vec2ForPreTraining(cfg).state_dict()
    hf_meta, unmatched = rename(meta, key_table("to_hf", prefixed=True))
    assert not unmatched, unmatched
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config_to_hf(cfg, "Wav2Vec2ForPreTraining", None), indent=1))
    (out / "preprocessor_config.json").write_text(json.dumps(hf_preprocessor_config(cfg), indent=1))
    g = torch.Generator().manual_seed(0)
    tmp = out / "model.safetensors.partial"
    with open(tmp, "wb") as f:
        f.write(safetensors_header(hf_meta, {"format": "pt"}))
        for name, t in hf_meta.items():
            f.write(memoryview(_random_tensor(name, t, g).contiguous().view(-1).view(torch.uint8).numpy()))
    tmp.rename(out / "model.safetensors")


def build_fairseq_pt(hf_dir: Path, out: Path) -> None:
    """The same weights as a fairseq .pt (zip format, plain-dict cfg as XLS-R's), written from the mmapped HF file."""
    from safetensors.torch import load_file

    # The interop tests' fairseq builder (HF names -> fairseq names, reference/checkpoints.md §7.3): one copy.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
    from fairseq_fixtures import fairseq_model_cfg_from_hf, fairseq_state_from_hf

    hf_config = json.loads((hf_dir / "config.json").read_text())
    state = fairseq_state_from_hf(load_file(str(hf_dir / "model.safetensors")), hf_config, finetuned=False)  # mmapped
    model_cfg = fairseq_model_cfg_from_hf(hf_config)
    tmp = out.with_suffix(".partial")
    torch.save({"args": None, "cfg": {"model": model_cfg, "task": {"normalize": True}}, "model": state}, tmp)
    tmp.rename(out)


# ---------------------------------------------------------------------------- one measured side
class AnonPeak:
    """Samples RssAnon of this process every 20 ms in a thread; .peak in bytes."""

    def __init__(self):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.02)

    def sample(self):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                self.peak = max(self.peak, int(line.split()[1]) * 1024)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


def child(side: str, path: Path, seconds: float, threads: int, out: Path | None) -> dict:
    """Load (and run, or convert) in this process; return its figures."""
    torch.set_num_threads(threads)
    if side == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()
    else:
        import xlsr  # noqa: F401
        from xlsr.cli.main import main as xlsr_main
        from xlsr.interop.load import load_pretrained
    x = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(0))
    with AnonPeak() as anon:
        start = time.perf_counter()
        if side == "convert":
            assert xlsr_main(["convert", str(path), str(out), "--to", "hf"]) == 0
            load_s, forward_s = time.perf_counter() - start, 0.0
            shape = None
        else:
            if side == "transformers":
                model = transformers.Wav2Vec2ForPreTraining.from_pretrained(path).eval()
            else:
                model = load_pretrained(path).model
            load_s = time.perf_counter() - start
            with torch.no_grad():
                y = model.wav2vec2(x).last_hidden_state
            forward_s = time.perf_counter() - start - load_s
            assert torch.isfinite(y).all()
            shape = list(y.shape)
    return {"side": side, "load_s": load_s, "forward_s": forward_s, "total_s": load_s + forward_s,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak_anon": anon.peak,
            "output": shape}  # fmt: skip


def run_child(args, side: str, path: Path, out: Path | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", side, "--path", str(path), "--seconds", str(args.seconds),
           "--threads", str(args.threads)] + (["--out", str(out)] if out else [])  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{side} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def warm_page_cache(path: Path) -> None:
    # Both sides then read the file from memory, not the first one from disk.
    with open(path, "rb") as f:
        while f.read(1 << 26):
            pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="xls-r-1b")
    p.add_argument("--dir", type=Path, default=Path("/tmp/xlsr_load_large"))
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--convert", action="store_true")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument("--child", choices=("xlsr", "transformers", "convert"), help=argparse.SUPPRESS)
    p.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.seconds, args.threads, args.out)))
        return

    hf_dir = args.dir / args.preset / "hf"
    if args.rebuild or not (hf_dir / "model.safetensors").is_file():
        t = time.perf_counter()
        build_hf_dir(args.preset, hf_dir)
        print(f"built {hf_dir} in {time.perf_counter() - t:.0f} s")
    size = (hf_dir / "model.safetensors").stat().st_size
    print(f"{args.preset}: {size / GB:.2f} GB of weights; load + forward of {args.seconds:g} s of audio, "
          f"{args.threads} threads, median of {args.repeat} runs per side (fresh process each)")
    warm_page_cache(hf_dir / "model.safetensors")
    runs = {side: [run_child(args, side, hf_dir) for _ in range(args.repeat)] for side in ("transformers", "xlsr")}
    print(f"{'':14s}{'load s':>8s}{'forward s':>11s}{'total s':>9s}{'peak RSS GB':>13s}{'peak anon GB':>14s}")
    summary = {}
    for side, rs in runs.items():
        summary[side] = {k: statistics.median(r[k] for r in rs) for k in ("load_s", "forward_s", "total_s")}
        summary[side].update(peak_rss=max(r["peak_rss"] for r in rs), peak_anon=max(r["peak_anon"] for r in rs))
        s = summary[side]
        print(f"{side:14s}{s['load_s']:8.2f}{s['forward_s']:11.2f}{s['total_s']:9.2f}"
              f"{s['peak_rss'] / GB:13.2f}{s['peak_anon'] / GB:14.2f}")
    ours, theirs = summary["xlsr"], summary["transformers"]
    print(f"{'xlsr / tf':14s}{ours['load_s'] / theirs['load_s']:8.2f}{'':11s}{ours['total_s'] / theirs['total_s']:9.2f}"
          f"{ours['peak_rss'] / theirs['peak_rss']:13.2f}{ours['peak_anon'] / theirs['peak_anon']:14.2f}")
    print("targets: total time <= 1.5x, peak RSS <= 1.2x transformers'")

    if args.convert:
        pt = args.dir / args.preset / "fairseq.pt"
        if args.rebuild or not pt.is_file():
            build_fairseq_pt(hf_dir, pt)
        out = args.dir / args.preset / "converted"
        warm_page_cache(pt)
        r = run_child(args, "convert", pt, out)
        print(f"xlsr convert {pt.name} -> hf: {r['total_s']:.1f} s, peak RSS {r['peak_rss'] / GB:.2f} GB "
              f"(mostly pages of the mapped file, which the kernel can drop), "
              f"peak anonymous {r['peak_anon'] / GB:.2f} GB")


if __name__ == "__main__":
    main()
