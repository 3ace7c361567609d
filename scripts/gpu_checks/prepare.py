"""Prepare the one-command GPU check (scripts/gpu_checks/run.sh) on this machine, for a bare GPU machine.

The GPU machine has torch, transformers, numpy, scipy, matplotlib, pyyaml, safetensors, tqdm and tensorboard,
but not the synthesizer's packages, and it cannot reach a package index. This writes, into the git-ignored
folder `.gpu/`:

- `.gpu/whl/`: the wheels it lacks (espeak-ng bundled by espeakng-loader, soundfile + cffi + pycparser, soxr,
  flashlight-text), for CPython 3.12 on x86-64 Linux;
- `.gpu/wordfreq/`: a stand-in for the `wordfreq` package holding only what the synthesizer reads from it
  (the top-5000 word list and those words' frequencies for each language the demo and the releases speak),
  built here from the real wordfreq: its wheel is 57 MB, over what a device call may carry.

The corpora synthesized there are then byte-identical to the ones synthesized here. Run:

    .venv/bin/python scripts/gpu_checks/prepare.py        # here, once (needs PyPI)
    # then, with the device tool: command `bash scripts/gpu_checks/run.sh`, carry [".gpu"], timeout 600
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU_DIR = ROOT / ".gpu"
WHEELS = ["espeakng-loader==0.2.4", "soundfile==0.14.0", "cffi==2.1.1", "pycparser==3.12", "soxr==1.1.0",
          "flashlight-text==0.0.7"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "any"]
TOP_N = 5000  # xlsr.data.synth.text.word_list reads this many words

STAND_IN = '''"""Stand-in for wordfreq on the GPU machine (scripts/gpu_checks/prepare.py): the synthesizer's word lists only."""

import json
from pathlib import Path

_LISTS = json.loads((Path(__file__).with_name("lists.json")).read_text(encoding="utf-8"))


def available_languages(wordlist="best"):
    return {code: code for code in _LISTS}


def top_n_list(lang, n, wordlist="best"):
    words = _LISTS[lang]["top"]
    if n > len(words):
        raise ValueError(f"the stand-in holds {len(words)} words of {lang!r}, {n} asked for")
    return words[:n]


def get_frequency_dict(lang, wordlist="best"):
    return dict(_LISTS[lang]["freq"])
'''


def download_wheels(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + WHEELS, check=True)


def write_wordfreq_stand_in(dest: Path) -> None:
    import wordfreq

    from xlsr.data.synth.languages import LANGUAGES
    from xlsr.demo import DemoSettings
    from xlsr.released.recipes import RELEASES

    settings = DemoSettings()
    langs = {settings.target, *settings.pretrain_langs, "en"}  # en: the English-overlap check of word_list
    for recipe in RELEASES.values():
        langs.update(recipe.langs)
    lists = {}
    for code in sorted({LANGUAGES[lang].wordfreq for lang in langs}):
        top = wordfreq.top_n_list(code, TOP_N)
        table = wordfreq.get_frequency_dict(code)
        lists[code] = {"top": top, "freq": {w: table[w] for w in top if w in table}}
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / "__init__.py").write_text(STAND_IN, encoding="utf-8")
    (dest / "lists.json").write_text(json.dumps(lists, ensure_ascii=False), encoding="utf-8")
    print(f"{dest}: word lists of {len(lists)} languages")


def main(argv: list[str] | None = None) -> int:
    # no options: the parser gives --help (the module's docstring) and refuses anything else before any download
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    download_wheels(GPU_DIR / "whl")
    write_wordfreq_stand_in(GPU_DIR / "wordfreq")
    size = sum(p.stat().st_size for p in GPU_DIR.rglob("*") if p.is_file())
    print(f"{GPU_DIR}: {size / 2**20:.1f} MiB to carry")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
