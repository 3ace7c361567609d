"""The `xlsr` subcommands, one module each (see main.py), and the option layout the training commands share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from xlsr.errors import SettingsError, XlsrError  # imports nothing: `xlsr --help` stays quick

T = TypeVar("T")

# A bound on any option in seconds: far above a real window, stream piece or batch (11.6 days of audio), far below
# where seconds * sample rate stops being a whole number Python or torch can hold (1e308 s: OverflowError deep inside)
MAX_SECONDS = 1e6


def check_seconds(**options: float) -> None:
    """One XlsrError naming the first option (keyword `chunk_seconds` → `--chunk-seconds`) above MAX_SECONDS."""
    for name, value in options.items():
        if value > MAX_SECONDS:
            raise XlsrError(f"--{name.replace('_', '-')}: {value:g} s is more than the most allowed, "
                            f"{MAX_SECONDS:g} s")


def finite_float(text: str) -> float:
    """argparse type: a number, not nan or infinity (which `float` would accept and the maths would not)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number above 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number above 0")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: a whole number 0 or more (a seed: numpy's generators refuse negative ones)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number 0 or more")
    return value


def add_decode_timeout_argument(p: argparse.ArgumentParser) -> None:
    """--decode-timeout, for the commands that decode audio in worker processes (its default: DEFAULT_TIMEOUT_S)."""
    from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S  # lazy: `xlsr --help` stays quick

    def seconds(text: str) -> float:
        value = finite_float(text)
        if not 0 <= value <= MAX_SECONDS:
            raise argparse.ArgumentTypeError(f"{text!r}: give seconds, 0 or more (at most {MAX_SECONDS:g})")
        return value

    p.add_argument("--decode-timeout", type=seconds, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="seconds a decoding worker may spend on one file: a decoder that hangs on a damaged file is "
                   f"stopped and the file counted as failed, not waited for (default {DEFAULT_TIMEOUT_S:g}; 0: wait "
                   "as long as it takes; without workers, decoding in this process, it is not timed)")


def decode_timeout(args: argparse.Namespace) -> float | None:
    """--decode-timeout as the library takes it (None: no limit)."""
    return args.decode_timeout or None


def folder_name(text: str) -> str:
    """argparse type: a path that is not empty (an empty --out would write into the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("give a folder name, not an empty string")
    return text


def add_config_command(subparsers, name: str, cls: type, *, help: str, description: str, model_group: str,
                       own: dict[str, dict] | None = None, model_defaults: dict | None = None,
                       model_other_default: str = "") -> argparse.ArgumentParser:
    """Add subcommand `name` whose options are the fields of dataclass `cls`, resolved by `resolve_config`.

    In `--help` order: `--config YAML`; the `own` fields, given their own form ({field: add_argument keywords});
    `--<field>` for every other field; `--model.<field>` (Wav2Vec2Config) in a group titled `model_group`, whose
    help shows the command's `model_defaults` and words every other default as `model_other_default` (a run's
    model starts from a preset or checkpoint, not from Wav2Vec2Config's own defaults).
    """
    # lazy: every command module imports this package, and `xlsr --help` should not pay for yaml (~0.1 s, via
    # xlsr.config) or torch (~6 s, via xlsr.model); only the command being run builds its options
    from xlsr.config import add_config_arguments
    from xlsr.model import Wav2Vec2Config

    own = own or {}
    p = subparsers.add_parser(name, help=help, description=description,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="YAML", action="append",
                   help="a YAML (or JSON) file of settings; given more than once, a later file overrides an earlier "
                        "one, and command-line keys override them all")
    for field, kwargs in own.items():
        p.add_argument(f"--{field}", **kwargs)
    add_config_arguments(p, cls, skip=tuple(own))
    group = p.add_argument_group(model_group)
    add_config_arguments(group, Wav2Vec2Config, prefix="model.", defaults=model_defaults or {},
                         other_default=model_other_default)
    p.set_defaults(own_fields=tuple(own))
    return p


def resolve_config(cls: type[T], args: argparse.Namespace, yamls: Sequence[str | Path] = (),
                   recipe_kind: str | None = None) -> T:
    """`cls` from its defaults < `yamls` < --config YAML < the command line, for a parser from `add_config_command`.

    With `recipe_kind` ("pretrain", "finetune"), the shipped recipe named by --recipe, or else by a `recipe:` key of
    the --config YAML, is applied first (a recipe named in a YAML is applied, never only recorded). Its errors are
    SettingsErrors.
    """
    try:
        return _resolved(cls, args, yamls, recipe_kind)
    except SettingsError:
        raise
    except XlsrError as exc:  # every process of a torchrun job reads the same options and files: see cli/main.py
        raise SettingsError(str(exc)) from exc


def _resolved(cls: type[T], args: argparse.Namespace, yamls: Sequence[str | Path], recipe_kind: str | None) -> T:
    from xlsr.config import collect_overrides, load_config, read_yaml  # lazy: as in add_config_command
    from xlsr.train.recipes import recipe_path

    overrides = collect_overrides(args)
    configs = list(args.config or [])
    for field, value in [("config", c) for c in configs] + [(f, getattr(args, f)) for f in args.own_fields]:
        if isinstance(value, str) and not value.strip():  # `--config "$CFG"` with CFG unset: not the defaults
            raise XlsrError(f"--{field}: an empty name; give one, or leave --{field} out")
    for field in args.own_fields:
        if getattr(args, field):  # given
            overrides[field] = getattr(args, field)
    recipes = []
    if recipe_kind is not None:
        named_in = None  # (the last --config that names a recipe, the recipe)
        for config in configs:
            if (named := read_yaml(config).get("recipe")) is not None:  # (a run's config.yaml: `recipe: null`)
                named_in = config, named
        if overrides.get("recipe"):
            recipes = [recipe_path(overrides["recipe"], recipe_kind)]
        elif named_in is not None:
            recipes = [recipe_path(str(named_in[1]), recipe_kind, where=f"{named_in[0]}: recipe")]
    return load_config(cls, [*recipes, *yamls, *configs], overrides)


INTERRUPTED = 130  # the shell's status for a process stopped by Ctrl-C; ours for any stop before max_updates


def training_status(run_dir: Path, max_updates: int) -> int:
    """The exit status of a training command: 0 when the run reached `max_updates`, INTERRUPTED when Ctrl-C or
    SIGTERM stopped it earlier (it saved and can resume), so that `xlsr pretrain ... && next-step` does not
    go on with a half-trained model."""
    from xlsr.train.checkpoint import run_finished  # lazy: imports torch

    return 0 if run_finished(run_dir, max_updates) else INTERRUPTED
