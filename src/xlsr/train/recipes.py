"""The shipped recipes: YAML settings files applied before --config (`xlsr pretrain --recipe`, `xlsr finetune
--recipe`). Pretraining recipes live in xlsr/recipes/, fine-tuning recipes in xlsr/recipes/finetune/."""

from __future__ import annotations

from pathlib import Path

from xlsr.errors import XlsrError

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
FOLDERS = {"pretrain": RECIPES_DIR, "finetune": RECIPES_DIR / "finetune"}


def recipe_names(kind: str = "pretrain") -> list[str]:
    """The shipped recipes of `kind` ("pretrain" or "finetune"), sorted."""
    return sorted(p.stem for p in FOLDERS[kind].glob("*.yaml"))


def recipe_path(name: str, kind: str = "pretrain", where: str = "--recipe") -> Path:
    """The YAML file of a shipped recipe (`tiny-demo` → xlsr/recipes/tiny-demo.yaml); one line naming `where` the
    name came from when unknown."""
    path = FOLDERS[kind] / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.is_file():
        known = recipe_names(kind)
        raise XlsrError(f"{where} {name}: no such {kind} recipe (available: {', '.join(known) or 'none'})")
    return path
