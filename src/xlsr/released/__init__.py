"""The released checkpoints: tiny models pretrained with `xlsr pretrain` on the embedded corpus, each in its
own folder here with its exact recipe (RECIPE.md, recipe.json) and training curve."""

from xlsr.released.recipes import (
    MULTILINGUAL_LANGS,
    RELEASED_DIR,
    RELEASES,
    TARGET,
    ReleaseRecipe,
    missing_files,
    monolingual_name,
    multilingual_name,
    release_recipes,
    released_path,
    require_released,
)

__all__ = ["MULTILINGUAL_LANGS", "RELEASED_DIR", "RELEASES", "TARGET", "ReleaseRecipe", "missing_files",
           "monolingual_name", "multilingual_name", "release_recipes", "released_path", "require_released"]
