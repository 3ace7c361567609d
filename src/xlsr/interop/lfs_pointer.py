"""A Git LFS pointer where a weight file should be: what a Hugging Face hub repo cloned without git-lfs holds.

`git clone https://huggingface.co/USER/MODEL` on a machine without git-lfs leaves each large file (weights,
safetensors, .pt, .bin) as a small text file naming it (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md).
The readers would call it damaged or refuse it as unsafe; this names what it is and how to get the file.
"""

from __future__ import annotations

import re
from pathlib import Path

from xlsr.errors import CheckpointError

POINTER_START = b"version https://git-lfs.github.com/spec/v1"
_MAX_POINTER_BYTES = 1024  # the spec's pointers are ~130 bytes; a weight file is far larger


def check_not_lfs_pointer(path: str | Path) -> None:
    """CheckpointError naming `path` when it is a Git LFS pointer instead of the file it stands for."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(_MAX_POINTER_BYTES + 1)
    except OSError:
        return  # not readable: the reader says so
    if not head.startswith(POINTER_START) or len(head) > _MAX_POINTER_BYTES:
        return
    size = re.search(rb"\nsize (\d+)", head)
    stands_for = f" of {int(size[1]):,} bytes" if size else ""
    raise CheckpointError(f"{path}: a Git LFS pointer to the file{stands_for}, not the file itself (a repository "
                          f"cloned without git-lfs); run `git lfs install && git lfs pull` in {path.parent}")
