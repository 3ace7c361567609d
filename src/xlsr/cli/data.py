"""`xlsr data`: corpus statistics, importers to our JSONL manifests, tar shards for streaming, and a check of every
audio file before a long run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xlsr.cli import INTERRUPTED, add_decode_timeout_argument, decode_timeout, finite_float
from xlsr.errors import ManifestError, XlsrError
from xlsr.rates import SAMPLE_RATE

if TYPE_CHECKING:
    from xlsr.data.utterance_index import UtteranceIndex

OUT_HELP = "corpus folder for the manifests, OUT/<lang>/<split>.jsonl"
SHARD_WORKERS = 8  # default cap of `data shard --workers` (docs/shards.md: one writer, ~4x at most measured)
MAX_BAD_SHARE = 0.05  # bad manifest lines skipped (and listed) before stats refuses a manifest: the training default
PRETRAIN_MIN_SAMPLE_SIZE = 32000  # `xlsr pretrain`'s default --min-sample-size (train/pretrain.py), the α table's


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="corpus statistics; import Common Voice, fairseq, folder, lhotse or Hugging Face corpora; "
                              "shards; normalized text; a check of every audio file")
    sub = p.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)

    s = sub.add_parser("stats", help="hours, utterances and speakers per language and split")
    s.add_argument("dir", help="corpus folder with <lang>/<split>.jsonl, or a shard folder (its index.json: hours, "
                   "utterances and shards; no speakers)")
    s.add_argument("--alpha", type=finite_float, default=None,
                   help="also print the α sampling weights of the --split manifests, p_l ∝ (n_l/N)^α with n_l a "
                   "language's hours (of its utterances at least --min-sample-size long: those a run weighs)")
    s.add_argument("--split", default="train",
                   help="the split the α table is of: pretraining's --train-split (default train)")
    s.add_argument("--min-sample-size", type=int, default=PRETRAIN_MIN_SAMPLE_SIZE, metavar="S",
                   help="the α table weighs only utterances at least S samples long, as a run with this "
                   "--min-sample-size does (it skips the others); a shard folder's table weighs them all, as its run "
                   f"does (default {PRETRAIN_MIN_SAMPLE_SIZE}, pretraining's)")
    s.set_defaults(func=run_stats)

    sh = sub.add_parser("shard", help="write WebDataset-style tar shards (FLAC + JSON) and an index for streaming")
    sh.add_argument("--data", required=True, help="corpus folder with <lang>/<split>.jsonl")
    sh.add_argument("--out", required=True, help="shard folder (SHARDS/<split>/<lang>-NNNNNN.tar + index.json)")
    sh.add_argument("--shard-size", default="1GB", help="close a shard before it passes this size (default 1GB)")
    sh.add_argument("--splits", default="train,dev", help="comma-separated splits to shard (default train,dev)")
    sh.add_argument("--max-bad-share", type=finite_float, default=0.05,
                    help="bad manifest lines (a share of its lines) and unreadable audio files (a share of its "
                    "utterances) skipped and reported per manifest; more stops the run (default 0.05)")
    sh.add_argument("--workers", type=int, default=None, metavar="N",
                    help="processes decoding the audio and encoding its FLAC: a decoder that crashes on a damaged "
                    "file costs that file, skipped as unreadable, not the run; 0: in this process, with no such "
                    f"isolation (default: the CPU cores this process may use, at most {SHARD_WORKERS}: one process "
                    "writes the tars, and on 16 kHz FLAC sources about 4 encoders keep it busy)")
    add_decode_timeout_argument(sh)
    sh.set_defaults(func=run_shard)

    ck = sub.add_parser("check", help="decode every utterance as training reads it and report the bad ones, before "
                        "a long run", description="Decode every utterance of the chosen manifests with the loader "
                        "training uses and judge it as training does: unreadable (missing, damaged, not audio), "
                        "wrong_length (decoded length off the manifest's num_samples), too_short (with "
                        "--min-sample-size), crashed (the decoder killed its worker process: the file is named and "
                        "the check goes on with a fresh worker). REPORT gets one JSON line per bad utterance; a "
                        "summary per manifest is printed; the exit status is 1 when any utterance or manifest line "
                        "is bad, 0 when none is. Judged files are kept in REPORT.partial as they are judged: the same "
                        "command after a stop goes on where it was (one with other manifests, or after a manifest "
                        "changed, is refused until REPORT.partial is deleted). See docs/data_scale.md. With a shard folder as --data "
                        "(SHARDS, or SHARDS/<split>), every tar is read as training reads it, hashed against its index "
                        "and each utterance decoded: REPORT gets one JSON line per finding (a tar missing, unlisted, cut "
                        "or damaged; a bad utterance) and a summary per language and split is printed; see docs/shards.md.")
    ck.add_argument("--data", metavar="DIR",
                    help="corpus folder with <lang>/<split>.jsonl, or a shard folder (default: none; give --manifest)")
    ck.add_argument("--splits", metavar="LIST",
                    help="comma-separated splits of --data to check (default: every split found)")
    ck.add_argument("--manifest", nargs="+", action="extend", default=[], metavar="FILE",
                    help="manifest(s) to check, besides or instead of --data's (default: none)")
    ck.add_argument("--out", required=True, metavar="REPORT",
                    help="report file: one JSON line per bad utterance (manifest, line, id, audio, kind, message)")
    ck.add_argument("--workers", type=int, default=None, metavar="N",
                    help="decoding processes (default: the CPU cores this process may use)")
    add_decode_timeout_argument(ck)
    ck.add_argument("--min-sample-size", type=int, default=0, metavar="S",
                    help="also report utterances shorter than S samples once decoded as too_short: pretraining "
                    "(whose --min-sample-size defaults to 32000, 2 s) skips them; 0: not checked (default 0)")
    ck.add_argument("--write-clean", metavar="OUTDIR",
                    help="also write the manifests without their bad utterances to OUTDIR/<lang>/<split>.jsonl, audio "
                    "paths valid from there; the originals stay as they are (default: not written)")
    ck.add_argument("--no-progress", action="store_true", help="no progress bar")
    ck.set_defaults(func=run_check)

    nt = sub.add_parser("normalize-text", help="a copy of a corpus's manifests with lower-cased, unpunctuated text",
                        description="Copy DIR/<lang>/<split>.jsonl to OUT with every `text` label normalized: "
                        "Unicode NFC, lower case (in each line's `lang`: I becomes ı in Turkish, Azerbaijani, Crimean Tatar and Gagauz, and in Tatar and Kazakh written in Latin, tt-Latn, kk-Latn), "
                        "punctuation and symbols removed (apostrophes inside words kept), single spaces. `phones` "
                        "and the audio are untouched; the original manifests stay as they are. Score models "
                        "trained on OUT with `xlsr evaluate --normalize-text`.")
    nt.add_argument("--data", required=True, help="corpus folder with <lang>/<split>.jsonl")
    nt.add_argument("--out", required=True, help="folder for the normalized manifests")
    nt.set_defaults(func=run_normalize_text)

    imp = sub.add_parser("import", help="write manifests for an existing corpus")
    kinds = imp.add_subparsers(title="formats", metavar="FORMAT", dest="format", required=True)
    cv = kinds.add_parser("commonvoice", help="Common Voice release folder (clips/ + train/dev/test.tsv)")
    cv.add_argument("src")
    cv.add_argument("--lang", default=None, help="language code (default: the tsv's locale column)")
    cv.add_argument("--splits", default=None, metavar="LIST",
                    help="comma-separated tsvs of SRC to import, each into the split of its name (default train,dev,"
                    "test, those present); e.g. validated, or other (clips not yet voted on) for pretraining")
    fs = kinds.add_parser("fairseq", help="fairseq .tsv manifests with .wrd/.ltr/.phn labels")
    fs.add_argument("tsv", nargs="+")
    fs.add_argument("--lang", required=True, help="language code of every entry")
    fs.add_argument("--split", default=None,
                    help="split of every tsv's entries (default: each tsv's name, valid or validation -> dev)")
    fo = kinds.add_parser("folder", help="a folder of audio files, plus a transcript file if they have labels")
    fo.add_argument("src")
    fo.add_argument("--transcripts",
                    help="lines: <file's path relative to SRC, or its name; extension optional><TAB or space><label> "
                    "(default: none: every audio file under SRC, unlabeled, for pretraining)")
    fo.add_argument("--lang", required=True, help="language code of every file")
    fo.add_argument("--split", default="train", help="split the files go to (default train)")
    fo.add_argument("--label", choices=["text", "phones"], default="text",
                    help="the manifest field the transcripts fill (default text)")
    for q in (cv, fs, fo):
        q.add_argument("--out", required=True, help=f"{OUT_HELP} (the audio stays where it is)")
        q.add_argument("--max-bad-share", type=finite_float, default=0.05,
                       help="share of bad lines and missing or unreadable audio files skipped (and listed); more "
                       "stops the import (default 0.05)")
        q.set_defaults(func=run_import)
    lh = kinds.add_parser("lhotse", help="lhotse cuts, or recordings (+ supervisions), jsonl(.gz) manifests")
    lh.add_argument("--src", nargs="+", required=True, metavar="MANIFEST", help="CUTS, or RECORDINGS [SUPERVISIONS]")
    hf = kinds.add_parser("hf", help="a Hugging Face dataset's Parquet files or save_to_disk folder (embedded audio)")
    hf.add_argument("--src", required=True, help="folder (or one file) of .parquet or .arrow files")
    hf.add_argument("--audio-column", default="audio", help="the column holding the audio (default audio)")
    hf.add_argument("--text-column", default="sentence", help="'' for audio only (default sentence)")
    hf.add_argument("--lang-column", default="locale", help="read when --lang is not given (default locale)")
    hf.add_argument("--split-from-filename", action="store_true", help="train-0000.parquet, validation/ -> dev, ...")
    for q in (lh, hf):
        q.add_argument("--out", required=True, help=f"{OUT_HELP}, and the audio it decodes (FLAC)")
        q.add_argument("--lang", default=None, help="language code of every item (default: from the data)")
        q.add_argument("--split", default="train", help="split every item goes to (default train)")
        q.add_argument("--max-bad-share", type=finite_float, default=0.05,
                       help="share of unreadable items skipped (and listed); more stops the import (default 0.05)")
        q.set_defaults(func=run_ecosystem_import)


def run_stats(args: argparse.Namespace) -> int:
    # lazy: numpy (via data.manifest/sampling) would add ~0.4 s to `xlsr --help`, which imports every command module
    from xlsr.data.index_cache import open_manifest
    from xlsr.data.utterance_index import UtteranceIndex

    root = Path(args.dir)
    if args.alpha is not None and not 0.0 <= args.alpha <= 1.0:  # before a large corpus is read
        raise XlsrError(f"--alpha: must be in [0, 1], got {args.alpha:g}")
    if args.min_sample_size < 0:
        raise XlsrError(f"--min-sample-size: must be at least 0, got {args.min_sample_size}")
    if root.is_file():  # a manifest given for its corpus folder
        raise ManifestError(f"{root}: a file, not a data folder: give the folder that holds <lang>/<split>.jsonl (or a "
                            f"shard folder)")
    if not root.is_dir():
        raise ManifestError(f"{root}: no such data folder")
    from xlsr.data.shard_index import shard_source

    if (source := shard_source(root)) is not None:  # SHARDS, or SHARDS/<split>
        return _shard_stats(*source, args.alpha, args.split)
    manifests = sorted(root.glob("*/*.jsonl"))
    if not manifests:
        raise ManifestError(f"{root}: no manifests <lang>/<split>.jsonl found")
    if args.alpha is not None:
        _check_alpha_split(root, args.split, sorted({path.stem for path in manifests}))
    print(f"{'lang':<8}{'split':<8}{'utts':>8}{'hours':>10}{'speakers':>10}")
    totals = [0, 0.0]
    train = []
    for path in manifests:
        # the utterance index (built on first use, cached beside the manifest); bad lines: as a training run
        utts = open_manifest(path, max_bad_share=MAX_BAD_SHARE)
        hours = int(utts.num_samples.sum()) / SAMPLE_RATE / 3600
        print(f"{path.parent.name:<8}{path.stem:<8}{len(utts):>8}{hours:>10.3f}{utts.num_speakers():>10}")
        totals[0] += len(utts)
        totals[1] += hours
        if path.stem == args.split:
            train.append(utts)
    print(f"{'total':<16}{totals[0]:>8}{totals[1]:>10.3f}")
    if args.alpha is not None and train:
        print()
        print(_alpha_table(UtteranceIndex.concat(train), args.alpha, args.min_sample_size, args.split))
    return 0


def _alpha_table(utts: UtteranceIndex, alpha: float, min_sample_size: int, split: str) -> str:
    """The language sampling table a run on `utts` prints: of the utterances at least `min_sample_size` samples long
    (pretrain_loader skips the others, and a language left with none is refused), with a line on those left out."""
    import numpy as np

    from xlsr.data.sampling import weights_table

    if not utts.hours():
        return f"no α table: the {split} manifests hold no utterances"
    kept = utts.subset(np.flatnonzero(utts.num_samples >= min_sample_size))
    hours = kept.hours()
    lines = [weights_table(hours, alpha)] if hours else []
    limit = f"--min-sample-size={min_sample_size} samples ({min_sample_size / SAMPLE_RATE:g} s)"
    if len(kept) < len(utts):
        lines.append(f"left out: {len(utts) - len(kept)} of {len(utts)} utterances shorter than {limit}, as a run "
                     "skips them")
    lost = [lang for lang in utts.hours() if lang not in hours]
    if lost:
        them = "it" if len(lost) == 1 else "them"
        lines.append(f"{', '.join(lost)}: no utterance at least {limit} long: a run refuses {them}; lower "
                     f"--min-sample-size, or leave {them} out (--langs)")
    return "\n".join(lines)


def _check_alpha_split(root: Path, split: str, found: list[str]) -> None:
    """--alpha with no manifest (or shards) of --split would print no table: one line saying so instead."""
    if split not in found:
        raise ManifestError(f"--split: {root} has no {split} split for the α table (found: {', '.join(found)}); "
                            f"--split names the split a run trains on, its --train-split")


def _shard_stats(root: Path, split: str | None, alpha: float | None, alpha_split: str = "train") -> int:
    """`data stats` of a shard folder (of its split `split`, when given), from its index: utterances, hours and
    shards per language and split, once the tars are those the index lists (by name and size; their sha256 is
    checked as training reads them)."""
    from xlsr.data.sampling import weights_table
    from xlsr.data.shard_index import check_shards, read_index

    index = read_index(root)
    if alpha is not None:
        _check_alpha_split(root, alpha_split, [split] if split is not None else sorted(index.splits()))
    shards = index.of_split(split) if split is not None else index.shards
    for part in [split] if split is not None else index.splits():
        check_shards(index, part)  # the tars as listed: a missing or unlisted one is one line, a truncated one a warning
    rows: dict[tuple[str, str], list] = {}
    for shard in shards:
        row = rows.setdefault((shard.lang, shard.split), [0, 0.0, 0])
        row[0] += shard.utterances
        row[1] += shard.hours
        row[2] += 1
    print(f"{'lang':<8}{'split':<8}{'utts':>8}{'hours':>10}{'shards':>10}")
    for (lang, part), (utts, hours, count) in sorted(rows.items()):
        print(f"{lang:<8}{part:<8}{utts:>8}{hours:>10.3f}{count:>10}")
    print(f"{'total':<16}{sum(r[0] for r in rows.values()):>8}{sum(r[1] for r in rows.values()):>10.3f}"
          f"{len(shards):>10}")
    train = {lang: row[1] for (lang, part), row in sorted(rows.items()) if part == alpha_split}
    if alpha is not None and train:
        print()
        print(weights_table(train, alpha))
    return 0


def run_normalize_text(args: argparse.Namespace) -> int:
    from xlsr.data.normalize_corpus import normalize_corpus  # lazy: as in run_stats

    print(normalize_corpus(args.data, args.out).line(args.out))
    return 0


def _check_names(args: argparse.Namespace) -> None:
    """--lang and --split name a folder and a file under --out: plain names, checked before any work."""
    from xlsr.data.manifest import check_plain_name  # lazy: as in run_stats

    for what, name in (("language code", getattr(args, "lang", None)), ("split", getattr(args, "split", None))):
        if name is not None:  # not given: taken from the data, and checked where it names a folder
            check_plain_name(what, name)


def run_check(args: argparse.Namespace) -> int:
    from xlsr.cores import available_cores  # lazy: as in run_stats
    from xlsr.data.check_audio import check_audio, corpus_manifests
    from xlsr.data.shard_index import shard_source

    if args.data is None and not args.manifest:
        raise XlsrError("give the manifests to check: --data DIR, --manifest FILE ..., or both")
    if args.splits is not None and args.data is None:
        raise XlsrError("--splits: chooses among the manifests of --data DIR; give --data too")
    if args.workers is not None and args.workers < 1:
        raise XlsrError(f"--workers: give a whole number 1 or more, got {args.workers}")
    splits = None if args.splits is None else [x.strip() for x in args.splits.split(",") if x.strip()]
    if args.data is not None and (source := shard_source(args.data)) is not None:  # SHARDS, or SHARDS/<split>
        return _check_shards(args, *source, splits)
    manifests = (corpus_manifests(args.data, splits) if args.data is not None else []) + args.manifest
    return _run_check(lambda: check_audio(
        manifests, args.out, workers=args.workers or available_cores(), min_sample_size=args.min_sample_size,
        clean_dir=args.write_clean, data_dir=args.data, decode_timeout=decode_timeout(args),
        show_progress=not args.no_progress))


def _run_check(check) -> int:
    """Run a check (its library call, `check()`), print its summary: exit 1 with anything bad, 0 without, INTERRUPTED
    after Ctrl-C (what it judged is kept)."""
    from xlsr.data.check_audio import CheckStopped

    try:
        report = check()
    except CheckStopped as stop:
        print(f"xlsr: interrupted: {stop}", file=sys.stderr)
        return INTERRUPTED
    for line in report.lines():
        print(line)
    return 1 if report.any_bad else 0


def _check_shards(args: argparse.Namespace, root: Path, split: str | None, splits: list[str] | None) -> int:
    """`data check --data SHARDS` (or SHARDS/<split>): every shard read and every utterance decoded as training
    reads them (data/check_shard_folder.py)."""
    from xlsr.cores import available_cores
    from xlsr.data.check_shard_folder import check_shard_folder

    if args.manifest:
        raise XlsrError(f"--manifest: check manifests and the shard folder {args.data} in two runs")
    if args.write_clean is not None:
        raise XlsrError(f"--write-clean: a shard folder is not copied without its bad utterances (training skips "
                        f"them); to drop them, check the corpus {args.data} was sharded from with --write-clean and "
                        f"shard the clean copy")
    if split is not None:
        if splits is not None and splits != [split]:
            raise XlsrError(f"--splits: {args.data} is the shard split {split!r}; give the shard folder {root} to "
                            f"choose splits")
        splits = [split]
    return _run_check(lambda: check_shard_folder(
        root, args.out, splits=splits, workers=args.workers or available_cores(), min_sample_size=args.min_sample_size,
        decode_timeout=decode_timeout(args), show_progress=not args.no_progress))


def run_import(args: argparse.Namespace) -> int:
    from xlsr.data import importers  # lazy: as in run_stats

    _check_names(args)

    if args.format == "commonvoice":
        # --splits not given: the importer's default tsvs (train, dev, test: those present)
        splits = {} if args.splits is None else {"splits": tuple(s.strip() for s in args.splits.split(",") if s.strip())}
        if splits and not splits["splits"]:  # the importer would take an empty list for its default
            raise XlsrError(f"--splits {args.splits!r}: names no tsv (e.g. --splits validated or train,dev,test)")
        summary = importers.import_common_voice(args.src, args.out, lang=args.lang, max_bad_share=args.max_bad_share,
                                                **splits)
    elif args.format == "fairseq":
        summary = importers.import_fairseq(args.tsv, args.out, lang=args.lang, split=args.split,
                                           max_bad_share=args.max_bad_share)
    elif args.transcripts is None:
        summary = importers.import_audio_folder(args.src, args.out, lang=args.lang, split=args.split,
                                                max_bad_share=args.max_bad_share)
    else:
        summary = importers.import_folder(args.src, args.transcripts, args.out, lang=args.lang, split=args.split,
                                          label=args.label, max_bad_share=args.max_bad_share)
    print(summary.line())
    return 0


def run_ecosystem_import(args: argparse.Namespace) -> int:
    try:  # lazy: lhotse and pyarrow take seconds to import, and are the optional extra `import`
        if args.format == "lhotse":
            from xlsr.data.import_lhotse import import_lhotse as run
            options = {}
        else:
            from xlsr.data.import_hf import import_hf as run
            options = {"audio_column": args.audio_column, "text_column": args.text_column,
                       "lang_column": args.lang_column, "split_from_filename": args.split_from_filename}
    except ModuleNotFoundError as exc:
        raise XlsrError(f"xlsr data import {args.format} needs {exc.name}: pip install 'xlsr[import]'") from None
    _check_names(args)
    summary = run(args.src, args.out, lang=args.lang, split=args.split, max_bad_share=args.max_bad_share, **options)
    print(summary.line())
    return 0


def run_shard(args: argparse.Namespace) -> int:
    from xlsr.cores import available_cores  # lazy: as in run_stats
    from xlsr.data.shards import parse_size, write_shards

    splits = [x.strip() for x in args.splits.split(",") if x.strip()]
    report = write_shards(args.data, args.out, shard_size=parse_size(args.shard_size), splits=splits,
                          max_bad_share=args.max_bad_share,
                          workers=min(available_cores(), SHARD_WORKERS) if args.workers is None else args.workers,
                          decode_timeout=decode_timeout(args))
    shards = report.index.shards
    hours = sum(s.hours for s in shards)
    print(f"{len(shards)} shards ({report.written} written, {report.kept} kept from an earlier run), "
          f"{sum(s.utterances for s in shards)} utterances, {hours:.3f} hours in {args.out}")
    if report.unreadable:  # the shards kept from an earlier run left out files too, which that run reported
        first = f"first: {report.skipped[0]}" if report.skipped else "reported by the run that wrote their shards"
        print(f"skipped {report.unreadable} unreadable audio files ({first})")
    return 0
