"""A checkpoint with the Transformer's top blocks dropped (docs/demo/investigation.md, twenty-sixth round).

Blocks 0..KEEP-1 and everything else (the CNN, the positional convolution, the encoder's final LayerNorm, the
quantizer) are kept as they are; the state dict is loaded strictly into a model of KEEP blocks, so nothing is left
out or invented. `--random-init-seed S` drops the blocks of the demo's random-weight model of SRC's architecture
(drawn as `xlsr demo` draws it) instead of SRC's own weights.

    python benchmarks/drop_top_blocks.py src/xlsr/released/tiny-multilingual /tmp/r10/multi3 --keep 3
    python benchmarks/drop_top_blocks.py src/xlsr/released/tiny-multilingual /tmp/r10/scratch3 --keep 3 \
        --random-init-seed 0
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining


def drop_top_blocks(src: Path, dst: Path, keep: int) -> Path:
    """Write SRC (a pretraining checkpoint) with its first `keep` Transformer blocks only to DST."""
    loaded = load_pretrained(src)
    if not isinstance(loaded.model, Wav2Vec2ForPreTraining):
        raise XlsrError(f"{src}: a {type(loaded.model).__name__}, not a pretraining checkpoint")
    if not 1 <= keep < loaded.config.num_layers:
        raise XlsrError(f"--keep: between 1 and {loaded.config.num_layers - 1} for {src}, got {keep}")
    dropped = tuple(f".layers.{i}." for i in range(keep, loaded.config.num_layers))
    state = {k: v for k, v in loaded.model.state_dict().items() if not any(d in k for d in dropped)}
    model = Wav2Vec2ForPreTraining(Wav2Vec2Config.from_dict({**loaded.config.to_dict(), "num_layers": keep}))
    model.load_state_dict(state, strict=True)
    return save_checkpoint(dst, model, metadata={"blocks_dropped_from": str(src), "kept_blocks": keep})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="a pretraining checkpoint")
    parser.add_argument("dst", type=Path, help="the folder to write")
    parser.add_argument("--keep", type=int, required=True, help="Transformer blocks kept, from the first")
    parser.add_argument("--random-init-seed", type=int, default=None,
                        help="drop the blocks of the demo's random-weight model of SRC's architecture (this seed)")
    args = parser.parse_args()
    try:
        if args.random_init_seed is None:
            print(drop_top_blocks(args.src, args.dst, args.keep))
            return
        from xlsr.demo.finetuning import random_init

        with tempfile.TemporaryDirectory() as tmp:
            drawn = random_init(args.src, Path(tmp) / "random", args.random_init_seed)
            print(drop_top_blocks(drawn, args.dst, args.keep))
    except XlsrError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
