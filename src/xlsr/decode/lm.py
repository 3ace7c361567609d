"""n-gram language models with KenLM's `lmplz` and `build_binary` (no estimator of our own).

`build_lm` writes the model and a small JSON sidecar `<LM>.json` saying what its "words" are:
- units="words": ordinary words; a word list `<LM>.words.txt` is written too, from which a
  character vocabulary spells the lexicon for lexicon decoding;
- units="phones" / "chars": each vocabulary token is one LM "word" (phones split on spaces,
  characters one by one with `|` for spaces), for lexicon-free decoding of phone or char models.

The programs are looked up in $XLSR_KENLM_BIN, <repo>/tools/kenlm/bin, ./tools/kenlm/bin, then PATH;
`scripts/build_kenlm.sh` builds them into tools/kenlm/bin.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from xlsr.atomic import write_json, write_text
from xlsr.decode.output_files import same_file
from xlsr.errors import XlsrError
from xlsr.jsonl import parse_json
from xlsr.text.vocab import WORD_BOUNDARY, tokenize

LM_UNITS = ("words", "phones", "chars")
KENLM_BIN_ENV = "XLSR_KENLM_BIN"
MAX_ORDER = 6  # KenLM's default KENLM_MAX_ORDER for build_binary and the decoder
_RESERVED = {"<s>", "</s>", "<unk>"}
_MANIFEST_PROBE_LINES = 3  # first non-empty lines that, all JSON objects, make the text a JSONL manifest


def kenlm_search_dirs() -> list[Path]:
    """Where `find_kenlm_tool` looks before PATH, in order."""
    dirs = []
    if os.environ.get(KENLM_BIN_ENV):
        dirs.append(Path(os.environ[KENLM_BIN_ENV]))
    repo_root = Path(__file__).resolve().parents[3]  # src/xlsr/decode/lm.py -> repository root
    dirs += [repo_root / "tools" / "kenlm" / "bin", Path.cwd() / "tools" / "kenlm" / "bin"]
    return list(dict.fromkeys(dirs))


def find_kenlm_tool(name: str) -> Path:
    """Path of KenLM's `lmplz` or `build_binary`; XlsrError saying how to build it when absent."""
    for d in kenlm_search_dirs():
        candidate = d / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise XlsrError(f"KenLM's {name} not found in {kenlm_search_dirs()[0]} or on PATH; build it with "
                    "`bash scripts/build_kenlm.sh` (needs cmake, g++ and Boost) or set "
                    f"{KENLM_BIN_ENV} to the folder holding it")


def lm_corpus_lines(lines: Iterable[str], units: str = "words") -> Iterator[str]:
    """The LM training sentences for `units`: words, or space-separated phone / char tokens."""
    if units not in LM_UNITS:
        raise XlsrError(f"LM units: {units!r} is not one of {', '.join(LM_UNITS)}")
    for line in lines:
        if units == "words":
            # Char labels may carry `|` for spaces; a word LM wants plain words.
            tokens = line.replace(WORD_BOUNDARY, " ").split()
        else:
            tokens = tokenize(line, units)
        tokens = [t for t in tokens if t not in _RESERVED]
        if tokens:
            yield " ".join(tokens)


def sidecar_path(lm_path: str | Path) -> Path:
    """The JSON file describing an LM built by `build_lm`."""
    return Path(f"{lm_path}.json")


def words_path(lm_path: str | Path) -> Path:
    """The word list written next to a word LM (one word per line)."""
    return Path(f"{lm_path}.words.txt")


def read_lm_info(lm_path: str | Path) -> dict | None:
    """The sidecar of an LM built by `build_lm` ({"units", "order", "words"}), or None."""
    path = sidecar_path(lm_path)
    if not path.is_file():
        return None
    try:
        info = parse_json(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise XlsrError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(info, dict):
        raise XlsrError(f"{path}: an LM sidecar is a JSON object, got {type(info).__name__}")
    if info.get("units") not in LM_UNITS:
        raise XlsrError(f"{path}: 'units' must be one of {', '.join(LM_UNITS)}")
    if info.setdefault("words", None) is not None and not isinstance(info["words"], str):
        raise XlsrError(f"{path}: 'words' must be the word list's file name (a string) or null")
    return info


def _refuse_manifest(path: Path, first_lines: list[str], units: str = "words") -> None:
    """Refuse a JSONL manifest given as LM text: the LM would learn JSON syntax, not sentences.

    `first_lines`: the file's first non-empty lines; all of them being JSON objects makes it a manifest."""
    records = []
    for line in first_lines:
        try:
            record = parse_json(line)
        except ValueError:
            return
        if not isinstance(record, dict):
            return
        records.append(record)
    if not records:
        return
    preferred = ("phones", "text") if units == "phones" else ("text", "phones")
    fields = [f for f in preferred if any(f in r for r in records)]
    if not fields:
        raise XlsrError(f"{path}: holds JSON objects, one per line, not text; an LM is trained on plain text, one "
                        "sentence per line")
    field = fields[0]
    hint = " with --units phones" if field == "phones" and units != "phones" else ""
    raise XlsrError(f"{path}: is a JSONL manifest, not text; an LM is trained on plain text, one sentence per line: "
                    f"write its `{field}` labels one per line (xlsr has no command for it; e.g. "
                    f"jq -r '.{field} // empty' {path} > lm-text.txt) and train on that{hint}")


def _check_lm_outputs(text_file: Path, out: Path) -> None:
    """XlsrError unless build_lm may write `out` and its side files: none of them is the training text, and an
    existing `out` or sidecar is one that build_lm wrote (a rebuild replaces its own LM, never a user's file)."""
    sidecar, words = sidecar_path(out), words_path(out)
    for path in (out, sidecar, words):
        what = f"--out {out}:" if path == out else f"--out {out}: its side file {path}"
        if same_file(path, text_file):
            raise XlsrError(f"{what} is the training text (--text {text_file}), which writing the LM would "
                            f"overwrite; give --out another file name")
        if path.exists() and not path.is_file():
            raise XlsrError(f"{what} is not a regular file; give --out another file name")
    if _is_lm_sidecar(sidecar):
        return  # an LM built before: rebuilt over, with its word list
    leave = "it is left as it is: move it away or give --out another file name"
    if out.exists():
        raise XlsrError(f"--out {out}: exists and is not a language model xlsr lm build wrote (it has no sidecar "
                        f"{sidecar} recording its units and order); {leave}")
    for path in (sidecar, words):
        if path.exists():
            raise XlsrError(f"--out {out}: its side file {path} exists and is not one that xlsr lm build wrote; "
                            f"{leave}")


def _is_lm_sidecar(path: Path) -> bool:
    """Whether `path` is the sidecar build_lm writes beside an LM (a JSON object with its units and order)."""
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            info = parse_json(f.read(2**20))  # a sidecar is some 150 bytes: a bigger file is not one
    except ValueError:  # UnicodeDecodeError too
        return False
    return isinstance(info, dict) and info.get("units") in LM_UNITS and "order" in info


def _run(cmd: list[str], what: str, *, stdout=None) -> None:
    proc = subprocess.run(cmd, stdout=stdout if stdout is not None else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise XlsrError(f"{what}: {Path(cmd[0]).name} failed (exit {proc.returncode}): "
                        f"{lines[-1] if lines else 'no message'}")


def build_lm(text_file: str | Path, order: int, out: str | Path, *, units: str = "words",
             memory: str = "500M", binary: bool | None = None) -> Path:
    """Train an order-`order` KenLM on `text_file` (one sentence per line) and write it to `out`.

    `out` ending in `.arpa` keeps the ARPA text; anything else (default: `binary=None`) becomes a
    KenLM binary via `build_binary`. `memory` is lmplz's -S sort memory. Returns `out`. An existing `out` (or
    side file) is replaced only when its sidecar says build_lm wrote it, and none of them may be `text_file`.
    """
    text_file, out = Path(text_file), Path(out)
    if out.is_dir():
        raise XlsrError(f"{out}: is a folder; give the language model's file name (e.g. {out / 'lm.bin'})")
    if not 2 <= int(order) <= MAX_ORDER:
        raise XlsrError(f"LM order: must be between 2 and {MAX_ORDER} (the decoder cannot load a unigram LM), "
                        f"got {order}")
    if not re.fullmatch(r"(?:\d+\.?\d*|\.\d+)[%bKMGT]?", str(memory)) or float(re.sub("[%bKMGT]$", "", memory)) <= 0:
        raise XlsrError(f"--memory: lmplz's sort memory is a size such as 500M, 2G or 50%, got {memory!r}")
    if not text_file.is_file():
        raise XlsrError(f"{text_file}: no such text file")
    _check_lm_outputs(text_file, out)
    if binary is None:
        binary = out.suffix != ".arpa"
    lmplz = find_kenlm_tool("lmplz")
    build_binary = find_kenlm_tool("build_binary") if binary else None

    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) would otherwise be part of the first word
        with open(text_file, encoding="utf-8-sig") as f:
            head = list(itertools.islice((line for line in f if line.strip()), _MANIFEST_PROBE_LINES))
            _refuse_manifest(text_file, head, units)
            sentences = list(lm_corpus_lines(itertools.chain(head, f), units))
    except UnicodeDecodeError:
        raise XlsrError(f"{text_file}: not UTF-8 text") from None
    if not sentences:
        raise XlsrError(f"{text_file}: no text to train a language model on")

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xlsr-lm-", dir=out.parent) as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        arpa = Path(tmp) / "lm.arpa"
        # --discount_fallback: Kneser-Ney discounts cannot be estimated on tiny corpora otherwise.
        _run([str(lmplz), "-o", str(order), "-S", memory, "-T", tmp, "--discount_fallback",
              "--text", str(corpus), "--arpa", str(arpa)], str(text_file))
        if binary:
            tmp_out = Path(tmp) / "lm.bin"
            _run([str(build_binary), "-S", memory, str(arpa), str(tmp_out)], str(text_file))
            shutil.move(tmp_out, out)
        else:
            shutil.move(arpa, out)

    info = {"units": units, "order": int(order), "text": str(text_file.resolve()),
            "format": "binary" if binary else "arpa", "words": None}
    if units == "words":
        vocab_words = sorted({w for s in sentences for w in s.split()})
        write_text(words_path(out), "\n".join(vocab_words) + "\n")
        info["words"] = words_path(out).name
    write_json(sidecar_path(out), info, indent=1)
    return out
