"""What each released checkpoint is: its corpus (languages, size, seed) and its `xlsr pretrain` settings.

The two releases mirror the paper's comparison (spec §8.1) in its low-resource setting: one model
pretrained on many languages from several families with α = 0.5 and the demo's target language held out
(like XLSR-53 for a new language), and one pretrained on the target's own unlabeled audio only
(XLSR-Mono), of which a low-resource language has little. Both take the same number of updates of the
same batch size with the same recipe; they differ in which audio they learn from and how much.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from xlsr.data.augment import DEFAULT_AUGMENT
from xlsr.errors import CheckpointError

TARGET = "it"  # the demo's low-resource target language: Romance, with relatives among the pretraining languages
MULTILINGUAL_LANGS = (
    "es", "pt", "fr", "ro", "ca",  # Romance (the target's relatives)
    "en", "de", "nl", "sv",  # Germanic
    "ru", "pl", "cs",  # Slavic
    "fi", "hu",  # Uralic
    "tr",  # Turkic
)
PRETRAIN_RECIPE = "tiny-demo"  # the shipped `xlsr pretrain --recipe` both releases start from
# The realistic corpus of `xlsr synth` (many speakers, rooms, noise, speed, band-limiting), written out so that a
# change of the synth defaults cannot silently change what a rebuild makes (synthesize_corpus keyword arguments).
RELEASE_SYNTH = {"augment": DEFAULT_AUGMENT, "voices": "varied", "speakers_per_lang": 40}
# The clean corpus of earlier versions (`xlsr synth --clean`), on which the releases were built before 2026-12-03;
# the shipped ones (xlsr 0.1.0, as those before them) are on the realistic corpus, RELEASE_SYNTH.
CLEAN_SYNTH = {"augment": "none", "voices": "basic", "speakers_per_lang": 10}
# The target's own unlabeled audio in the low-resource setting, fixed before any result was seen: the median
# low-resource language of the paper's CommonVoice-10 pretraining (ky, nl, sv, tr, tt: 17 of 793 h) has 2.1% of
# the corpus's hours; 2.1% of the multilingual release's ~680 train minutes is ~14 min, 320 utterances (80% train).
LOW_RESOURCE_UTTS = 320
RELEASED_DIR = Path(__file__).resolve().parent  # the released checkpoints live beside this file
FILES = ("config.json", "model.safetensors", "RECIPE.md", "curve.png", "recipe.json")


@dataclass(frozen=True)
class ReleaseRecipe:
    """How one released checkpoint is made: `xlsr synth` of its corpus, then `xlsr pretrain` on it."""

    name: str
    description: str
    langs: tuple[str, ...]  # the pretraining languages (the corpus holds exactly these)
    utts_per_lang: int = 1000  # utterances synthesized per language (80% of them train)
    synth_seed: int = 1  # corpus seed; the demo synthesizes with another seed, so its test set is unseen
    recipe: str = PRETRAIN_RECIPE
    seed: int = 1  # training seed (weights, masks, negatives, sampling)
    alpha: float = 0.5  # language upsampling p_l ∝ (n_l/N)^α
    # the recipe's own length: ~60-80 minutes per release on one core (two side by side on the 2-core CPU)
    max_updates: int | None = 1600
    settings: tuple[tuple[str, str], ...] = ()  # further `xlsr pretrain --key value` settings

    def synth_args(self, corpus_dir: str | Path, workers: int = 1) -> list[str]:
        """The `xlsr synth` arguments that write this release's corpus into `corpus_dir`."""
        return ["synth", "--out", str(corpus_dir), "--langs", ",".join(self.langs),
                "--utts-per-lang", str(self.utts_per_lang), "--seed", str(self.synth_seed),
                "--workers", str(workers),
                *(arg for key, value in RELEASE_SYNTH.items() for arg in (f"--{key.replace('_', '-')}", str(value)))]

    def pretrain_settings(self) -> dict[str, str]:
        """The settings this recipe passes to `xlsr pretrain` on top of `--recipe` (no paths, no device)."""
        out = {"seed": str(self.seed), "alpha": f"{self.alpha:g}", "langs": ",".join(self.langs),
               "valid_split": "dev"}  # synth writes train/dev/test
        if self.max_updates is not None:
            out["max_updates"] = str(self.max_updates)
        out.update(dict(self.settings))
        return out

    def pretrain_args(self, corpus_dir: str | Path, run_dir: str | Path, machine: dict[str, str] | None = None) -> list[str]:
        """The `xlsr pretrain` arguments; `machine` adds settings that do not change the recipe (device, precision, workers)."""
        args = ["pretrain", "--recipe", self.recipe, "--data", str(corpus_dir), "--out", str(run_dir)]
        for key, value in {**self.pretrain_settings(), **(machine or {})}.items():
            args += [f"--{key.replace('_', '-')}", value]
        return args

    def quick(self) -> ReleaseRecipe:
        """A seconds-long version with the same layout, for tests and `xlsr demo --full --quick`."""
        return replace(self, langs=self.langs[:2], utts_per_lang=6, max_updates=2,
                       settings=self.settings + (("max_tokens", "160000"), ("min_sample_size", "8000"),
                                                 ("valid_every", "0"), ("save_every", "0"),
                                                 ("num_workers", "0"), ("tensorboard", "false")))


def multilingual_name(target: str = TARGET) -> str:
    """The multilingual release for a target: the shipped one, unless it was pretrained on the target."""
    return "tiny-multilingual" if target not in MULTILINGUAL_LANGS else f"tiny-multilingual-without-{target}"


def monolingual_name(target: str = TARGET) -> str:
    """The monolingual release for a target: pretrained on the target's own unlabeled audio."""
    return f"tiny-monolingual-{target}"


def release_recipes(target: str = TARGET) -> dict[str, ReleaseRecipe]:
    """The paper's two releases for a low-resource `target`: many languages without it, and the target alone."""
    if target in MULTILINGUAL_LANGS:
        langs = tuple(lang for lang in MULTILINGUAL_LANGS if lang != target)
        about = (f"{len(langs)} languages (α = 0.5): the shipped release's {len(MULTILINGUAL_LANGS)} without "
                 f"the demo's target `{target}`")
    else:  # the shipped release's languages: the target is held out already
        langs, about = MULTILINGUAL_LANGS, (f"{len(MULTILINGUAL_LANGS)} languages of 5 families (α = 0.5), "
                                            f"the demo's target `{target}` held out")
    multi = ReleaseRecipe(multilingual_name(target), f"tiny wav2vec 2.0 pretrained on {about}", langs)
    mono = ReleaseRecipe(monolingual_name(target),
                         f"tiny wav2vec 2.0 pretrained on `{target}` only: the target's own unlabeled audio, "
                         f"~14 minutes as a low-resource language has", (target,), utts_per_lang=LOW_RESOURCE_UTTS)
    return {multi.name: multi, mono.name: mono}


RELEASES: dict[str, ReleaseRecipe] = release_recipes(TARGET)  # the shipped ones, beside this file


def command_line(args: list[str]) -> str:
    """`xlsr <args>` as a shell command a user can paste."""
    return "xlsr " + shlex.join(args)


def released_path(name: str, root: str | Path | None = None) -> Path:
    """The folder of a released checkpoint (in `root`, default the package's released/ folder)."""
    if root is None and name not in RELEASES:  # another root may hold releases for another target (demo --full)
        raise CheckpointError(f"{name}: no such released checkpoint; known: {', '.join(RELEASES)}")
    return Path(root if root is not None else RELEASED_DIR) / name


def missing_files(name: str, root: str | Path | None = None) -> list[str]:
    """The files of a released checkpoint folder that are not there (empty when complete)."""
    folder = released_path(name, root)
    return [f for f in FILES if not (folder / f).is_file()]


def require_released(names: list[str] | tuple[str, ...] | None = None, root: str | Path | None = None) -> dict[str, Path]:
    """{name: folder} of complete released checkpoints; one CheckpointError line naming what is missing otherwise."""
    names = list(names or RELEASES)
    found = {}
    for name in names:
        folder = released_path(name, root)
        weights = folder / "model.safetensors"
        if not (folder / "config.json").is_file() or not weights.is_file():
            raise CheckpointError(
                f"{weights}: released checkpoint {name!r} is missing; create the released checkpoints with "
                f"`xlsr demo --full --out DIR` (re-trains them from scratch, then runs the demo) or "
                f"`scripts/release_checkpoints.sh`")
        found[name] = folder
    return found
