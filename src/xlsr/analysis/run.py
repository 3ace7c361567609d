"""`analyze`: the shared-discrete-units analysis end to end (spec §9), from a checkpoint and a data folder.

checkpoint + DIR/<lang>/<split>.jsonl → the same seconds of audio per language → quantizer codes
(eval mode) → per-language codeword distributions → sharing statistics, similarities, PCA, clustering
→ OUT/analysis.json, OUT/codeword_counts.npz and four PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xlsr.analysis import codebook as cb
from xlsr.analysis import plots
from xlsr.analysis.extract import extract_codeword_counts
from xlsr.analysis.output_folder import REPORT_MARK_KEY, Outputs, check_output_folder, remove_own_figures
from xlsr.analysis.selection import (
    available_seconds,
    check_audio_read,
    seconds_per_language,
)
from xlsr.atomic import write_file, write_json
from xlsr.data.index_cache import open_manifest
from xlsr.data.manifest import find_manifests
from xlsr.data.synth.languages import LANGUAGES
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.devices import pick_device
from xlsr.errors import XlsrError, require_seed
from xlsr.interop.load import load_pretrained
from xlsr.rates import SAMPLE_RATE

DEFAULT_MAX_SECONDS = 600.0  # default per-language amount is the smallest language's audio, capped here
PLOT_FILES = {
    "pca": "pca.png",
    "dendrogram": "dendrogram.png",
    "similarity": "similarity.png",
    "sharing": "sharing.png",
}
JSON_FILE = "analysis.json"
COUNTS_FILE = "codeword_counts.npz"
# what a rerun may replace in --out (its earlier outputs, told by their content); anything else there stays
OUTPUTS = Outputs(command=plots.ANALYZE, report=JSON_FILE, report_keys=("langs", "per_language", "similarity"),
                  arrays={COUNTS_FILE: ("langs", "codewords", "counts", "num_codewords")},
                  figures=tuple(PLOT_FILES.values()))


@dataclass
class AnalysisReport:
    """What `analyze` measured (`summary`, as written to analysis.json) and the files it wrote."""

    summary: dict
    counts: cb.CodewordCounts
    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)


def language_families(langs: list[str], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Family of each language: `overrides`, else the synthetic corpus's language table, else 'unknown'."""
    families = {}
    for lang in langs:
        # Common Voice style codes such as zh-CN or pt_BR fall back to their base language.
        entry = LANGUAGES.get(lang) or LANGUAGES.get(lang.replace("_", "-").split("-")[0])
        families[lang] = entry.family if entry is not None else "unknown"
    families.update({k: v for k, v in (overrides or {}).items() if k in families})
    return families


def _load_quantizing_model(model_path: str | Path):
    loaded = load_pretrained(model_path)
    model = loaded.model
    if not callable(getattr(model, "quantize", None)):
        raise XlsrError(
            f"{model_path}: a {type(model).__name__} checkpoint has no quantizer; the analysis needs a "
            f"pretraining checkpoint (Wav2Vec2ForPreTraining, e.g. from `xlsr pretrain` or a converted "
            f"XLSR-53 .pt), not a fine-tuned CTC model"
        )
    return loaded


def _read_languages(data_dir: Path, split: str, langs: list[str] | None) -> dict[str, tuple[Path, UtteranceIndex]]:
    if not data_dir.is_dir():
        raise XlsrError(f"{data_dir}: not a directory (expected DIR/<lang>/{split}.jsonl manifests)")
    manifests = dict(sorted(find_manifests(data_dir, split).items()))
    if langs:
        missing = [lang for lang in langs if lang not in manifests]
        if missing:
            have = ", ".join(manifests) or "none"
            raise XlsrError(
                f"{data_dir}: no {split}.jsonl manifest for language(s) {', '.join(missing)} (found: {have})"
            )
        manifests = {lang: manifests[lang] for lang in dict.fromkeys(langs)}
        if len(manifests) < 2:  # the corpus may hold more: --langs is what left one out, so name it
            raise XlsrError(f"--langs names {len(manifests)} language ({', '.join(manifests)}); give at least 2 "
                            f"languages (the analysis compares them)")
    if len(manifests) < 2:
        found = f"only {', '.join(manifests)}" if manifests else "none"
        raise XlsrError(
            f"{data_dir}: the analysis compares languages and needs {split}.jsonl manifests for at least "
            f"2 languages (DIR/<lang>/{split}.jsonl), found {found}"
        )
    # the utterance index (memory-mapped): a train split of millions of lines, of which a few minutes are read
    return {lang: (path, open_manifest(path)) for lang, path in manifests.items()}


def analyze(
    model_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    split: str = "train",
    seconds_per_lang: float | None = None,
    langs: list[str] | None = None,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    seed: int = 0,
    device: str = "cpu",
    families: dict[str, str] | None = None,
    plots: bool = True,
    show_progress: bool = True,
) -> AnalysisReport:
    """Run the shared-discrete-units analysis and write analysis.json, codeword_counts.npz and the PNGs into
    `out_dir`, where they may replace only an earlier analysis's files (analysis/output_folder.py)."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if out_dir.resolve() == data_dir.resolve():  # its report and counts among the language folders
        raise XlsrError(f"--out {out_dir}: is the --data folder; give the analysis a folder of its own")
    check_output_folder(out_dir, OUTPUTS, with_figures=plots)
    require_seed(seed)
    per_lang = _read_languages(data_dir, split, langs)
    torch_device = pick_device(device)  # a GPU this machine lacks: one line before loading the checkpoint
    loaded = _load_quantizing_model(model_path)
    cfg = loaded.config
    min_samples = cfg.receptive_field  # shorter audio gives no frame, so it does not count
    manifests = {lang: path for lang, (path, _) in per_lang.items()}
    available = {lang: available_seconds(utts, min_samples) for lang, (_, utts) in per_lang.items()}
    seconds = seconds_per_language(available, seconds_per_lang, max_seconds=max_seconds, manifests=manifests,
                                   min_samples=min_samples)
    clips, tallies = _extract_codes(loaded, per_lang, seconds, seed=seed, device=torch_device,
                                    show_progress=show_progress)
    G, V = cfg.num_codevector_groups, cfg.num_codevectors_per_group
    counts = cb.counts_from_tallies(tallies, num_codewords=V**G)
    summary = cb.statistics(counts)
    _add_sources(summary["per_language"], per_lang, language_families(counts.langs, families), clips, available)
    summary = {
        "model": str(model_path),
        "source_format": loaded.source_format,
        "num_codevector_groups": G,
        "num_codevectors_per_group": V,
        "data": str(data_dir),
        "split": split,
        "seconds_per_lang": seconds,
        "seed": seed,
        "langs": counts.langs,
        **summary,
    }
    files = _write_outputs(summary, counts, out_dir, with_plots=plots)
    return AnalysisReport(summary=summary, counts=counts, out_dir=out_dir, files=files)


def _extract_codes(loaded, per_lang: dict[str, tuple[Path, UtteranceIndex]], seconds: float, *, seed: int,
                   device: torch.device, show_progress: bool) -> tuple[dict, dict[str, cb.Tally]]:
    """Read the same seconds of clips per language and quantize them: (clips read, codeword tallies).

    A language whose audio read falls short (unreadable files that its other utterances could not make up for)
    is one XlsrError line: the comparison needs equal audio.
    """
    cfg = loaded.config
    min_samples = cfg.receptive_field  # shorter audio gives no frame
    model = loaded.model.to(device)
    tallies, clips = extract_codeword_counts(model, {lang: utts for lang, (_, utts) in per_lang.items()}, seconds,
                                             seed=seed, num_codevectors_per_group=cfg.num_codevectors_per_group,
                                             normalize=cfg.normalize_waveform, device=device, min_samples=min_samples,
                                             show_progress=show_progress)
    samples = {lang: sum(c.num_samples for c in lang_clips) for lang, lang_clips in clips.items()}
    check_audio_read(samples, seconds, min_samples=min_samples,
                     manifests={lang: path for lang, (path, _) in per_lang.items()})
    for lang, (used, _) in tallies.items():
        if used.size == 0:
            raise XlsrError(f"{per_lang[lang][0]}: language {lang!r} gave no frames (unreadable audio, or utterances "
                            f"shorter than {min_samples} samples?)")
    return clips, tallies


def _add_sources(per_language: dict[str, dict], per_lang: dict[str, tuple[Path, UtteranceIndex]],
                 family: dict[str, str], clips: dict, available: dict[str, float]) -> None:
    """Add each language's family, manifest and amount of audio (as read) to its figures."""
    for lang, (path, _) in per_lang.items():
        per_language[lang].update({
            "family": family[lang],
            "manifest": str(path),
            "seconds": sum(c.num_samples for c in clips[lang]) / SAMPLE_RATE,  # as read
            "utterances": len(clips[lang]),  # read; unreadable ones were replaced
            "available_seconds": available[lang],
        })


def _write_outputs(summary: dict, counts: cb.CodewordCounts, out_dir: Path, *, with_plots: bool) -> dict[str, Path]:
    """Write the PNGs (if asked; if not, remove an earlier analysis's), codeword_counts.npz and, last, analysis.json,
    each to a temporary name then renamed; record their names in `summary`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    if with_plots:
        files.update(_write_plots(summary, out_dir))
    else:  # before the report (output_folder.remove_own_figures): earlier figures would not match it
        remove_own_figures(out_dir, OUTPUTS)
    summary["files"] = {name: path.name for name, path in files.items()}
    files["counts"] = out_dir / COUNTS_FILE
    write_file(files["counts"], lambda tmp: _save_counts(counts, tmp))
    files["json"] = out_dir / JSON_FILE
    summary["files"].update(counts=files["counts"].name, json=files["json"].name)
    summary[REPORT_MARK_KEY] = plots.ANALYZE  # its figures carry the mark: a rerun knows them by it alone
    write_json(files["json"], summary)
    return files


def _save_counts(counts: cb.CodewordCounts, path: Path) -> None:
    with open(path, "wb") as f:  # a file object: numpy would add .npz to a temporary name
        np.savez_compressed(f, langs=np.array(counts.langs), codewords=counts.codewords, counts=counts.counts,
                            num_codewords=counts.num_codewords)


def _write_plots(summary: dict, out_dir: Path) -> dict[str, Path]:
    langs = summary["langs"]
    fam = [summary["per_language"][lang]["family"] for lang in langs]
    coords = np.array([summary["pca"]["coords"][lang] for lang in langs])
    explained = np.array(summary["pca"]["explained_variance_ratio"])
    sim = summary["similarity"]
    # The heatmap follows the dendrogram's leaf order, so clusters show as blocks.
    order = [langs.index(lang) for lang in summary["clustering"]["leaves"]]
    dist = np.array(sim["js_distance"])[np.ix_(order, order)]
    histogram = np.array([summary["sharing"]["histogram"][str(k)] for k in range(1, len(langs) + 1)])
    return {
        "pca": plots.plot_pca(coords, explained, langs, fam, out_dir / PLOT_FILES["pca"]),
        "dendrogram": plots.plot_dendrogram(np.array(summary["clustering"]["linkage"]), langs, fam,
                                            out_dir / PLOT_FILES["dendrogram"]),
        "similarity": plots.plot_heatmap(dist, [langs[i] for i in order], out_dir / PLOT_FILES["similarity"],
                                         title="Jensen–Shannon distance between codeword distributions",
                                         label="JS distance (0 = identical, 1 = disjoint)"),
        "sharing": plots.plot_sharing(histogram, out_dir / PLOT_FILES["sharing"]),
    }


def format_summary(summary: dict) -> str:
    """A plain-text table of the per-language figures and the sharing counts, for the terminal."""
    langs = summary["langs"]
    rows = [f"{'lang':<8} {'family':<14} {'seconds':>8} {'frames':>8} {'distinct':>8} {'ppl':>8} "
            f"{'specific':>8} {'spec.frames':>11}  nearest (JS dist)"]
    for lang in langs:
        s = summary["per_language"][lang]
        rows.append(
            f"{lang:<8} {s['family'][:14]:<14} {s['seconds']:>8.1f} {s['frames']:>8d} {s['distinct_codewords']:>8d} "
            f"{s['perplexity']:>8.1f} {s['specific_codewords']:>8d} {100 * s['specific_frame_share']:>10.1f}%  "
            f"{s['nearest']} ({s['nearest_js_distance']:.3f})"
        )
    sharing = summary["sharing"]
    hist = ", ".join(f"{k}: {n}" for k, n in sharing["histogram"].items())
    rows.append(f"codewords used: {summary['codewords_used']} of {summary['num_codewords']}; "
                f"by number of languages {{{hist}}}")
    rows.append(f"shared by ≥ 2 languages: {100 * sharing['shared_codeword_share']:.1f}% of used codewords, "
                f"{100 * sharing['shared_frame_share']:.1f}% of frames")
    return "\n".join(rows)

