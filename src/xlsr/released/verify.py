"""Check a release folder against its recipe (`verify_release`), one line per disagreement. What it checks, and no more:

- the five files are there, and config.json + model.safetensors load as a pretraining model with a quantizer;
- recipe.json: name, seed, corpus.langs / utts_per_lang / seed equal the recipe's;
- the corpus options (augment, voices, speakers_per_lang: RELEASE_SYNTH) where recipe.json records them: its corpus
  fields (written by builds since they were added) and the recorded `xlsr synth` command (commands[0]), whose
  languages, utterances and seed are compared too;
- recipe.json's resolved pretraining configuration equals what the recipe resolves to today, every key but
  MACHINE_KEYS (a key added since the build counts with ADDED_SINCE's value);
- the training finished: the last logged train update (final.train.update) is pretrain.max_updates;
- config.json: the model configuration is the one the recorded pretraining configuration builds, and its
  metadata (task, preset, alpha, data) is the recipe's (data: the corpus folder recipe.json records).

Not checked: that the weights are what the recorded commands would train (no hash of a rebuild), the corpus audio,
the curve, or RECIPE.md's text.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path

from xlsr.config import config_to_dict, load_config
from xlsr.data.augment import DEFAULT_AUGMENT, parse_augment
from xlsr.data.synth.corpus import SPEAKERS_PER_LANG
from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.jsonl import parse_json
from xlsr.released.recipes import CLEAN_SYNTH, FILES, RELEASE_SYNTH, ReleaseRecipe
from xlsr.train.pretrain import PretrainConfig, resolve_model_config
from xlsr.train.recipes import recipe_path

# Settings that pick the hardware, the paths of one build, a memory trade-off or what validation measures along the
# way, with identical results: not the recipe. (tests/train/test_pretrain.py checks that the feature-health figures
# and the probe leave the trained weights unchanged.)
MACHINE_KEYS = ("out", "data", "device", "precision", "num_workers", "decode_timeout", "progress", "tensorboard",
                "activation_checkpointing", "feature_health_frames", "probe_every", "probe_data", "probe_labels",
                "probe_steps")
# Settings added after a release was built, with the value that does what the build did without them: a
# record that lacks one ran with that value.
# `xlsr synth`'s corpus options when its command line leaves them out (cli/synth.py corpus_options)
SYNTH_DEFAULTS = {"augment": DEFAULT_AUGMENT, "voices": "varied", "speakers_per_lang": SPEAKERS_PER_LANG}
ADDED_SINCE = {"augment": "none", "shuffle_buffer": 1000,  # shuffle_buffer: only read for a shard folder
               "feature_encoder_lr_scale": 1.0, "head_lr_scale": 1.0,
               "min_loss_scale": 1e-4}  # only read in fp16; the releases trained in fp32


def expected_pretrain_config(recipe: ReleaseRecipe) -> dict:
    """The resolved `xlsr pretrain` configuration this recipe asks for (as RUN/config.yaml would hold it)."""
    cfg = load_config(PretrainConfig, [recipe_path(recipe.recipe)], {**recipe.pretrain_settings(), "recipe": recipe.recipe})
    return config_to_dict(cfg)


def synth_option(key: str, value):
    """A corpus option in comparable form (augment specs in canonical order with their ranges)."""
    if key == "augment":
        try:
            return str(parse_augment(value))
        except (XlsrError, TypeError):
            return value
    return value


def recorded_flags(words: list[str]) -> dict[str, str | bool]:
    """`--flag value`, `--flag=value` and bare `--flag` words of a recorded command, as {flag name: value}."""
    flags: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if eq:
                flags[name] = value
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                flags[name] = words[i + 1]
                i += 1
            else:
                flags[name] = True
        i += 1
    return flags


def synth_command_problems(command: str, recipe: ReleaseRecipe) -> list[str]:
    """How a recorded `xlsr synth ...` command differs from the recipe's corpus: languages, utterances, seed and
    the corpus options (augment, voices, speakers_per_lang), a flag left out counting with `xlsr synth`'s
    default (--clean: CLEAN_SYNTH's values)."""
    words = shlex.split(command)
    if words[:2] != ["xlsr", "synth"]:
        return [f"commands[0] is not an `xlsr synth` command: {command!r}"]
    flags = recorded_flags(words[2:])
    defaults = CLEAN_SYNTH if flags.get("clean") is True else SYNTH_DEFAULTS
    try:
        recorded = {"--langs": str(flags.get("langs", "")).split(","), "--utts-per-lang": int(flags["utts-per-lang"]),
                    "--seed": int(flags.get("seed", 0))}
        for key, default in defaults.items():
            value = flags.get(key.replace("_", "-"), default)
            recorded[f"--{key.replace('_', '-')}"] = synth_option(key, int(value) if key == "speakers_per_lang"
                                                                 else value)
    except (KeyError, ValueError):
        return [f"commands[0] does not parse as `xlsr synth`: {command!r}"]
    wanted = {"--langs": list(recipe.langs), "--utts-per-lang": recipe.utts_per_lang, "--seed": recipe.synth_seed,
              **{f"--{k.replace('_', '-')}": synth_option(k, v) for k, v in RELEASE_SYNTH.items()}}
    return [f"commands[0] (xlsr synth) {field} is {recorded[field]!r}, the recipe says {value!r}"
            for field, value in wanted.items() if recorded[field] != value]


def pretrain_command_problems(command: str, recipe: ReleaseRecipe) -> list[str]:
    """How a recorded `xlsr pretrain ...` command (the one RECIPE.md prints under "Reproduce") differs from the
    command the recipe gives, paths and machine settings (device, precision, workers, ...) aside."""
    words = shlex.split(command)
    if words[:2] != ["xlsr", "pretrain"]:
        return [f"commands[1] is not an `xlsr pretrain` command: {command!r}"]
    recorded = recorded_flags(words[2:])
    wanted = recorded_flags(recipe.pretrain_args("DATA", "RUN")[1:])
    machine = {key.replace("_", "-") for key in MACHINE_KEYS}
    return [f"commands[1] (xlsr pretrain) --{flag} is {recorded.get(flag)!r}, the recipe says {wanted.get(flag)!r}"
            for flag in sorted(set(recorded) | set(wanted)) if flag not in machine and recorded.get(flag) != wanted.get(flag)]


def recipe_block_problems(block: dict, recipe: ReleaseRecipe) -> list[str]:
    """How recipe.json's `recipe` block (the ReleaseRecipe the build ran) differs from `recipe`, its prose aside."""
    wanted = json.loads(json.dumps(asdict(recipe)))  # tuples as the lists JSON holds
    return [f"recipe.{key} is {block.get(key)!r}, the recipe says {value!r}"
            for key, value in wanted.items() if key != "description" and block.get(key) != value]


def verify_release(folder: str | Path, recipe: ReleaseRecipe) -> list[str]:
    """Every way `folder` disagrees with `recipe` or fails to load, one line each (empty: all good)."""
    folder = Path(folder)
    problems = [f"{folder / f}: missing" for f in FILES if not (folder / f).is_file()]
    if problems:
        return problems
    try:
        loaded = load_pretrained(folder)
    except XlsrError as exc:
        return [f"{folder}: does not load ({exc})"]
    if type(loaded.model).__name__ != "Wav2Vec2ForPreTraining" or not callable(getattr(loaded.model, "quantize", None)):
        problems.append(f"{folder}: a {type(loaded.model).__name__}, not a pretraining model with a quantizer")
    try:
        record = parse_json((folder / "recipe.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return problems + [f"{folder / 'recipe.json'}: not readable JSON ({exc})"]
    if not isinstance(record, dict):
        return problems + [f"{folder / 'recipe.json'}: not a JSON object"]

    def check(field: str, recorded, wanted) -> None:
        if recorded != wanted:
            problems.append(f"{folder / 'recipe.json'}: {field} is {recorded!r}, the recipe says {wanted!r}")

    check("name", record.get("name"), recipe.name)
    check("seed", record.get("seed"), recipe.seed)
    corpus = record.get("corpus", {})
    check("corpus.langs", corpus.get("langs"), list(recipe.langs))
    check("corpus.utts_per_lang", corpus.get("utts_per_lang"), recipe.utts_per_lang)
    check("corpus.seed", corpus.get("seed"), recipe.synth_seed)
    for key, wanted in RELEASE_SYNTH.items():  # recorded by builds since they were added; not by the shipped ones
        if key in corpus:
            check(f"corpus.{key}", synth_option(key, corpus[key]), synth_option(key, wanted))
    commands = record.get("commands") or []
    if commands:
        problems.extend(f"{folder / 'recipe.json'}: {p}" for p in synth_command_problems(commands[0], recipe))
    if len(commands) > 1:
        problems.extend(f"{folder / 'recipe.json'}: {p}" for p in pretrain_command_problems(commands[1], recipe))
    if isinstance(record.get("recipe"), dict):
        problems.extend(f"{folder / 'recipe.json'}: {p}" for p in recipe_block_problems(record["recipe"], recipe))
    if not commands and not any(key in corpus for key in RELEASE_SYNTH):
        problems.append(f"{folder / 'recipe.json'}: records neither its synth command nor the corpus options "
                        f"({', '.join(RELEASE_SYNTH)}): the corpus it was pretrained on cannot be checked")
    recorded_cfg = record.get("pretrain", {})
    wanted_cfg = expected_pretrain_config(recipe)
    for key in sorted(set(wanted_cfg) - set(MACHINE_KEYS)):
        check(f"pretrain.{key}", recorded_cfg.get(key, ADDED_SINCE.get(key)), wanted_cfg[key])
    # Trained to the end: a run stopped by Ctrl-C/SIGTERM saves and exits cleanly, with fewer updates.
    reached = ((record.get("final") or {}).get("train") or {}).get("update")
    if reached != recorded_cfg.get("max_updates"):
        problems.append(f"{folder / 'recipe.json'}: final.train.update is {reached!r}, pretrain.max_updates is "
                        f"{recorded_cfg.get('max_updates')!r}: the pretraining run did not finish")
    # The checkpoint's own record of its run.
    meta = loaded.metadata or {}
    for key, wanted in (("task", "pretrain"), ("preset", wanted_cfg.get("preset")), ("alpha", recipe.alpha),
                        ("data", recorded_cfg.get("data"))):
        if meta.get(key) != wanted:
            problems.append(f"{folder / 'config.json'}: metadata.{key} is {meta.get(key)!r}, "
                            f"{'recipe.json records' if key == 'data' else 'the recipe says'} {wanted!r}")
    # The weights are the model the recorded configuration builds.
    try:
        cfg = load_config(PretrainConfig, None, {k: v for k, v in recorded_cfg.items() if v is not None})
    except XlsrError as exc:  # a setting renamed or removed since, or a value today's checks refuse
        return problems + [f"{folder / 'recipe.json'}: the recorded pretraining config does not load ({exc})"]
    wanted_model = json.loads(json.dumps(resolve_model_config(cfg).to_dict(), default=list))
    shipped_model = json.loads(json.dumps(config_to_dict(loaded.config.to_dict()), default=list))
    for key in sorted(set(wanted_model) | set(shipped_model)):
        if wanted_model.get(key) != shipped_model.get(key):
            problems.append(f"{folder / 'config.json'}: model.{key} is {shipped_model.get(key)!r}, "
                            f"the recorded pretraining config builds {wanted_model.get(key)!r}")
    return problems
