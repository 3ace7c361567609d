"""The one progress-bar helper: tqdm on a terminal, quiet periodic lines otherwise (CI, logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar with the project's defaults; pass `disable=True` to silence it."""
    if disable is None:
        disable = False
    mininterval = 0.5 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, mininterval=mininterval,
                dynamic_ncols=True, **kwargs)
