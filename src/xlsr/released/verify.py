"""Check a release folder against its recipe: it loads, and what it records is what the recipe says."""

from __future__ import annotations

import json
from pathlib import Path

from xlsr.config import config_to_dict, load_config
from xlsr.errors import XlsrError
from xlsr.interop.load import load_pretrained
from xlsr.released.recipes import FILES, ReleaseRecipe
from xlsr.train.pretrain import PretrainConfig, resolve_model_config
from xlsr.train.recipes import recipe_path

# Settings that pick the hardware, the paths of one build, a memory trade-off or what validation measures along the
# way, with identical results: not the recipe. (tests/train/test_pretrain.py checks that the feature-health figures
# and the probe leave the trained weights unchanged.)
MACHINE_KEYS = ("out", "data", "device", "precision", "num_workers", "progress", "tensorboard",
                "activation_checkpointing", "feature_health_frames", "probe_every", "probe_data", "probe_labels",
                "probe_steps")
# Settings added after a release was built, with the value that does what the build did without them: a
# record that lacks one ran with that value.
ADDED_SINCE = {"augment": "none", "shuffle_buffer": 1000,  # shuffle_buffer: only read for a shard folder
               "feature_encoder_lr_scale": 1.0, "head_lr_scale": 1.0,
               "min_loss_scale": 1e-4}  # only read in fp16; the releases trained in fp32


def expected_pretrain_config(recipe: ReleaseRecipe) -> dict:
    """The resolved `xlsr pretrain` configuration this recipe asks for (as RUN/config.yaml would hold it)."""
    cfg = load_config(PretrainConfig, [recipe_path(recipe.recipe)], {**recipe.pretrain_settings(), "recipe": recipe.recipe})
    return config_to_dict(cfg)


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
    record = json.loads((folder / "recipe.json").read_text())

    def check(field: str, recorded, wanted) -> None:
        if recorded != wanted:
            problems.append(f"{folder / 'recipe.json'}: {field} is {recorded!r}, the recipe says {wanted!r}")

    check("name", record.get("name"), recipe.name)
    check("seed", record.get("seed"), recipe.seed)
    corpus = record.get("corpus", {})
    check("corpus.langs", corpus.get("langs"), list(recipe.langs))
    check("corpus.utts_per_lang", corpus.get("utts_per_lang"), recipe.utts_per_lang)
    check("corpus.seed", corpus.get("seed"), recipe.synth_seed)
    recorded_cfg = record.get("pretrain", {})
    wanted_cfg = expected_pretrain_config(recipe)
    for key in sorted(set(wanted_cfg) - set(MACHINE_KEYS)):
        check(f"pretrain.{key}", recorded_cfg.get(key, ADDED_SINCE.get(key)), wanted_cfg[key])
    # The weights are the model the recorded configuration builds.
    cfg = load_config(PretrainConfig, None, {k: v for k, v in recorded_cfg.items() if v is not None})
    wanted_model = json.loads(json.dumps(resolve_model_config(cfg).to_dict(), default=list))
    shipped_model = json.loads(json.dumps(config_to_dict(loaded.config.to_dict()), default=list))
    for key in sorted(set(wanted_model) | set(shipped_model)):
        if wanted_model.get(key) != shipped_model.get(key):
            problems.append(f"{folder / 'config.json'}: model.{key} is {shipped_model.get(key)!r}, "
                            f"the recorded pretraining config builds {wanted_model.get(key)!r}")
    return problems
