"""lhotse manifests -> our manifests, so lhotse's corpus recipes (Common Voice, FLEURS, MLS, VoxPopuli, BABEL, ...)
feed xlsr. lhotse itself reads the manifests and decodes the audio.

Input: a CutSet manifest (cuts.jsonl.gz), or a RecordingSet with its SupervisionSet (one utterance per
supervision), or a RecordingSet alone (untranscribed audio for pretraining; needs `lang`). A cut that
spans a whole single-channel file soundfile reads is referenced where it lies; any other cut (a segment of
a longer recording, a channel of several, a URL, a transformed recording) is decoded by lhotse, brought
to 16 kHz mono with soxr and written as FLAC under DIR/<lang>/audio, as our manifests have no offsets.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import lhotse
import numpy as np
from lhotse.cut import Cut, CutSet
from lhotse.serialization import load_manifest_lazy_or_eager

from xlsr.data.audio import audio_num_samples, to_mono
from xlsr.data.import_writer import DEFAULT_MAX_BAD_SHARE, ImportSummary, ImportWriter
from xlsr.data.languages import language_code
from xlsr.data.manifest import Utterance
from xlsr.errors import AudioError, XlsrError
from xlsr.progress import progress


def load_lhotse(path: str | Path):
    """One lhotse manifest (lazily when it is JSONL): a CutSet, RecordingSet or SupervisionSet."""
    path = Path(path)
    if not path.is_file():
        raise XlsrError(f"{path}: no such lhotse manifest")
    try:
        manifest = load_manifest_lazy_or_eager(path)
    # lhotse reports a file that is not its JSON(L) with asserts, JSON, gzip or its own errors alike
    except Exception as exc:
        raise XlsrError(f"{path}: not a lhotse manifest ({type(exc).__name__}: {str(exc)[:120]})") from None
    if manifest is None:
        raise XlsrError(f"{path}: empty lhotse manifest")
    if not isinstance(manifest, (lhotse.CutSet, lhotse.RecordingSet, lhotse.SupervisionSet)):
        raise XlsrError(f"{path}: a {type(manifest).__name__}; expected cuts, recordings or supervisions")
    return manifest


def lhotse_cuts(paths: list[str | Path]) -> CutSet:
    """The cuts that `paths` describe: a CutSet, or a RecordingSet (+ its SupervisionSet, cut per supervision)."""
    loaded = [(p, load_lhotse(p)) for p in paths]
    sets = {type(m).__name__: m for _, m in loaded}
    if len(sets) != len(paths) or set(sets) not in ({"CutSet"}, {"RecordingSet"},
                                                    {"RecordingSet", "SupervisionSet"}):
        kinds = ", ".join(f"{p} ({type(m).__name__})" for p, m in loaded)
        raise XlsrError(f"expected one CutSet, or a RecordingSet with or without its SupervisionSet; got {kinds}")
    if "CutSet" in sets:
        return sets["CutSet"]
    recordings = sets["RecordingSet"].to_eager()
    if "SupervisionSet" not in sets:
        return CutSet.from_manifests(recordings=recordings)
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=sets["SupervisionSet"].to_eager())
    return cuts.trim_to_supervisions(keep_overlapping=False)


def cut_labels(cut: Cut, lang: str | None) -> tuple[str, str | None, str]:
    """(language code, text or None, speaker) of a cut from its supervisions, in time order; `lang` wins."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    texts = [s.text for s in sups if s.text is not None]
    text = " ".join(t.strip() for t in texts) if texts else None
    speaker = next((s.speaker for s in sups if s.speaker), "unknown")
    if lang:
        return lang, text, speaker
    names = {s.language for s in sups if s.language}
    if not names:
        raise XlsrError("no language in its supervisions; pass --lang")
    codes = {language_code(name) for name in names}
    if len(codes) > 1:
        raise XlsrError(f"supervisions in several languages ({', '.join(sorted(codes))}); cut them apart first")
    return codes.pop(), text, speaker


def whole_file(cut: Cut) -> Path | None:
    """The file a cut covers entirely and alone (one channel, no transform), which can be referenced as is."""
    rec = getattr(cut, "recording", None)
    if (rec is None or len(rec.sources) != 1 or rec.sources[0].type != "file" or rec.transforms
            or rec.num_channels != 1 or cut.start > 0 or cut.end < rec.duration - 0.5 / rec.sampling_rate):
        return None
    return Path(rec.sources[0].source).resolve()  # as lhotse reads it: relative to the working folder


def cut_audio(cut: Cut) -> np.ndarray:
    """A cut's samples through lhotse, as 16 kHz mono float32."""
    try:
        data = np.asarray(cut.load_audio(), dtype=np.float32)  # (C, S) at cut.sampling_rate
    # lhotse's audio backends fail with their own, soundfile's, OS or decoder errors: each is a bad cut here
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200]  # lhotse's messages run over several lines
        raise AudioError(f"recording {cut.recording_id!r} could not be read ({type(exc).__name__}: {reason})") from None
    return to_mono(data.T, cut.sampling_rate, f"recording {cut.recording_id!r}")


def import_cut(cut: Cut, writer: ImportWriter, *, lang: str | None, split: str) -> None:
    """One cut into `writer`: referenced or written as FLAC; XlsrError (made a skip by the caller) if bad."""
    if not cut.has_recording:
        raise XlsrError("no recording")
    code, text, speaker = cut_labels(cut, lang)
    path = whole_file(cut)
    num_samples = 0
    if path is not None and not path.is_file():
        raise AudioError(f"recording {cut.recording_id!r}: no such file {path}")
    if path is not None:
        try:
            num_samples = audio_num_samples(path)
        except AudioError:
            path = None  # a file soundfile cannot read: lhotse's decoders may; then it is stored as FLAC
    utt_id = writer.unique_id(cut.id, code, split)
    if path is None:
        x = cut_audio(cut)
        path, num_samples = writer.write_audio(x, utt_id, code, split), len(x)
    writer.add(Utterance(audio=str(path), num_samples=num_samples, lang=code, speaker=speaker, text=text,
                         id=utt_id), split)


def _numbered(cuts: CutSet, source: str) -> Iterator[tuple[int, Cut]]:
    """(position, cut); a manifest line lhotse cannot parse ends the import with one line naming it."""
    items = iter(cuts)
    for number in itertools.count(1):
        try:
            cut = next(items)
        except StopIteration:
            return
        # a broken line stops lhotse's lazy reader, so nothing after it could be read: a refusal, not a skip
        except Exception as exc:
            raise XlsrError(f"{source}: cut {number} could not be read ({type(exc).__name__}: "
                            f"{str(exc)[:120]})") from None
        yield number, cut


def import_lhotse(src: str | Path | list[str | Path], out_dir: str | Path, *, lang: str | None = None,
                  split: str = "train", max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                  show_progress: bool = True) -> ImportSummary:
    """lhotse manifest(s) -> DIR/<lang>/<split>.jsonl (+ FLAC under DIR/<lang>/audio for segments); the summary."""
    paths = [src] if isinstance(src, (str, Path)) else list(src)
    cuts = lhotse_cuts(paths)
    source = " + ".join(str(p) for p in paths)
    with ImportWriter(out_dir, source=source, unit="cuts", max_bad_share=max_bad_share) as writer:
        for number, cut in progress(_numbered(cuts, source), desc="import lhotse", unit="cut",
                                    disable=not show_progress):
            try:
                import_cut(cut, writer, lang=lang, split=split)
            except XlsrError as exc:
                writer.skip(f"{source}: cut {number} {cut.id!r}", str(exc))
        return writer.finish()
