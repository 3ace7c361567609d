"""Strict weight loading: every key present, none left over, every shape right; else one error listing them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from xlsr.errors import CheckpointError, listing

# What a wrapper puts before every key of the model it wraps: torch.compile's OptimizedModule, DistributedDataParallel
# and DataParallel. A state dict saved from the wrapper holds the model's weights under these names.
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def without_wrapper_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` without the wrapper prefix that every one of its keys carries (`_orig_mod.`, `module.`; as often as
    wrappers were nested); a prefix only some keys carry is kept, for the key check to name."""
    state = dict(state)
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def check_state_dict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path,
    names: Callable[[str], str] | None = None,
) -> None:
    """Raise CheckpointError naming `source` if `state` lacks, adds or reshapes any of the model's tensors.

    `names` maps our key to the name `source` has for it (an imported file's own naming); by default ours.
    """
    name = names or (lambda key: key)
    expected = model.state_dict()
    missing = sorted(name(k) for k in set(expected) - set(state))
    unexpected = sorted(name(k) for k in set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing keys: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {listing(unexpected)}")
    wrong = sorted(
        f"{name(k)} {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if wrong:
        problems.append(f"shapes contradict the config: {listing(wrong)}")
    if problems:
        raise CheckpointError(f"{source}: " + "; ".join(problems))


def load_state_dict_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path
) -> None:
    """Copy `state` into `model` after `check_state_dict`; nothing is loaded partially."""
    check_state_dict(model, state, source)
    model.load_state_dict(dict(state), strict=True)


_INITIALIZERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                 "sparse_")  # fmt: skip


@contextlib.contextmanager
def _initializers_skipped():
    """torch.nn.init's functions return their tensor untouched: a meta model's init is thrown away anyway.

    Why: on the meta device they run through torch's Python reference kernels, whose first use imports
    seconds of code (2.5 s of a 3 s load, measured). Patched for the duration of the build only.
    """
    saved = {name: getattr(torch.nn.init, name) for name in _INITIALIZERS}
    for name in saved:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def build_with_weights(
    build: Callable[[], torch.nn.Module], state: Mapping[str, torch.Tensor], source: str | Path,
    *, names: Callable[[str], str] | None = None,
) -> torch.nn.Module:
    """`build()` on the meta device, then `state`'s tensors become its weights: no random init, no copy.

    Tensors memory-mapped from a file stay mapped (copy-on-write: training writes to private pages,
    never to the file), so loading holds one copy of the weights, not two. A tensor whose dtype differs
    from the model's (an fp16 checkpoint) is converted, that one only. `names`: as for `check_state_dict`.
    """
    with torch.device("meta"), _initializers_skipped():
        model = build()
    check_state_dict(model, state, source, names)
    expected = model.state_dict()
    state = {k: v if v.dtype == expected[k].dtype else v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor the state dict does not hold (a non-persistent buffer): a model change to review
        raise RuntimeError(f"built on the meta device, these were never filled: {listing(left)}")
    return model
