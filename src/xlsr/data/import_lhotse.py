"""lhotse manifests -> our manifests, so lhotse's corpus recipes (Common Voice, FLEURS, MLS, VoxPopuli, BABEL, ...)
feed xlsr. lhotse itself reads the manifests and decodes the audio.

Input: a CutSet manifest (cuts.jsonl.gz), or a RecordingSet with its SupervisionSet (one utterance per
supervision), or a RecordingSet alone (untranscribed audio for pretraining; needs `lang`). A cut that
spans a whole single-channel file soundfile reads is referenced where it lies; any other cut (a segment of
a longer recording, a channel of several, a URL, a transformed recording) is decoded by lhotse, brought
to 16 kHz mono with soxr and written as FLAC under DIR/<lang>/audio, as our manifests have no offsets.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from lhotse import Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.cut import Cut, CutSet
from lhotse.serialization import (
    NotALhotseManifest,
    deserialize_item,
    extension_contains,
    load_manifest_lazy_or_eager,
    resolve_manifest_set_class,
)

from xlsr.data.audio import audio_num_samples, to_mono
from xlsr.data.import_writer import DEFAULT_MAX_BAD_SHARE, ImportRefused, ImportSummary, ImportWriter
from xlsr.data.languages import language_code
from xlsr.data.manifest import Utterance
from xlsr.errors import AudioError, XlsrError
from xlsr.jsonl import parse_json
from xlsr.progress import progress

ITEM_TYPES = {"CutSet": Cut, "RecordingSet": Recording, "SupervisionSet": SupervisionSegment}
Item = tuple[int, Any]  # (position in its manifest, the item there or an XlsrError saying why there is none)
# seconds a supervision may reach past its cut's edges (rounding of lhotse's times): lhotse's ASR datasets allow 2 ms
SUPERVISION_SLACK = 2e-3


def parse_item(line: bytes) -> Any:
    """The lhotse item (cut, recording, supervision, ...) one JSONL line holds, or an XlsrError (returned, not
    raised) saying why it holds none."""
    try:
        data = parse_json(line)
    except json.JSONDecodeError as exc:  # where in the line: json's own "line 2 column 1" would count from the line
        return XlsrError(f"not JSON ({exc.msg} at character {exc.pos + 1})")
    except UnicodeDecodeError:
        return XlsrError("not UTF-8 text")
    if not isinstance(data, dict):
        return XlsrError(f"a JSON {type(data).__name__}, not an object")
    try:
        return deserialize_item(data)
    # lhotse's from_dict methods fail on a missing or wrong field with TypeError, KeyError, ValueError alike
    except Exception as exc:
        reason = " ".join(str(exc).split())[:120]
        return XlsrError(f"not a lhotse item ({type(exc).__name__}: {reason})")


def jsonl_items(path: Path) -> Iterator[Item]:
    """(line number, item) of a JSONL manifest (.gz too), a line at a time: a broken line is one bad item and the
    lines after it are read on. A file that cannot be read on (a .gz cut short) is one XlsrError naming it."""
    number = 0
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield number, parse_item(line)
    except (OSError, EOFError, zlib.error) as exc:
        raise XlsrError(f"{path}: unreadable after line {number} ({type(exc).__name__}: {str(exc)[:120]})") from None


def jsonl_kind(path: Path) -> str:
    """'CutSet', 'RecordingSet' or 'SupervisionSet': the manifest its first good line belongs to."""
    first = None
    for number, item in jsonl_items(path):
        if not isinstance(item, XlsrError):
            try:
                return resolve_manifest_set_class(item).__name__
            except NotALhotseManifest as exc:
                raise XlsrError(f"{path}: not a lhotse manifest ({exc})") from None
        first = first or f"line {number}: {item}"
    if first is None:
        raise XlsrError(f"{path}: empty lhotse manifest")
    raise XlsrError(f"{path}: not a lhotse manifest (no line holds a cut, recording or supervision; {first})")


def load_lhotse(path: str | Path) -> tuple[str, Iterable[Item]]:
    """One lhotse manifest: its kind ('CutSet', 'RecordingSet', 'SupervisionSet') and its items. JSONL is read
    lazily, a line at a time, a broken line being a bad item; other files (JSON) are read by lhotse, whole."""
    path = Path(path)
    if not path.is_file():
        raise XlsrError(f"{path}: no such lhotse manifest")
    if extension_contains(".jsonl", path):
        kind = jsonl_kind(path)
        _check_kind(path, kind)
        return kind, _of_kind(jsonl_items(path), kind)
    try:
        manifest = load_manifest_lazy_or_eager(path)
    # lhotse reports a file that is not its JSON(L) with asserts, JSON, gzip or its own errors alike
    except Exception as exc:
        raise XlsrError(f"{path}: not a lhotse manifest ({type(exc).__name__}: {str(exc)[:120]})") from None
    if manifest is None:
        raise XlsrError(f"{path}: empty lhotse manifest")
    kind = type(manifest).__name__
    _check_kind(path, kind)
    return kind, _of_kind(enumerate(manifest, 1), kind)


def _check_kind(path: Path, kind: str) -> None:
    """XlsrError unless `kind` is a manifest of cuts, recordings or supervisions (not features, say)."""
    if kind not in ITEM_TYPES:
        raise XlsrError(f"{path}: a {kind}; expected cuts, recordings or supervisions")


def _of_kind(items: Iterable[Item], kind: str) -> Iterator[Item]:
    """`items`, an item of another kind than the manifest's (a recording among cuts), or one whose fields lhotse
    cannot use (`unusable`), made a bad one."""
    for number, item in items:
        if not isinstance(item, (XlsrError, ITEM_TYPES[kind])):
            item = XlsrError(f"a {type(item).__name__} in a {kind} manifest")
        elif not isinstance(item, XlsrError) and (problem := unusable(item)):
            item = XlsrError(problem)
        yield number, item


# lhotse builds its items from any JSON values and fails on a wrong one only when it uses it (a TypeError from
# round() for a duration "abc", a ZeroDivisionError for a sampling rate 0): each field's kind is checked here
def _text(v: Any) -> bool:
    return isinstance(v, str)


def _seconds(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _length(v: Any) -> bool:
    return _seconds(v) and v >= 0


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _rate(v: Any) -> bool:
    return _count(v) and v > 0


def _channels(v: Any) -> bool:
    return _count(v) or isinstance(v, list) and all(_count(c) for c in v)


def _optional_text(v: Any) -> bool:
    return v is None or isinstance(v, str)


KINDS = {_text: "a string", _seconds: "a number of seconds", _length: "a number of seconds 0 or more",
         _count: "a whole number 0 or more", _rate: "a whole number above 0", _channels: "a channel or a list of them",
         _optional_text: "a string or null"}
RECORDING = {"id": _text, "sampling_rate": _rate, "num_samples": _count, "duration": _length}
SOURCE = {"type": _text, "channels": _channels}
SUPERVISION = {"id": _text, "recording_id": _text, "start": _seconds, "duration": _length, "channel": _channels,
               "text": _optional_text, "language": _optional_text, "speaker": _optional_text}
CUT = {"id": _text, "start": _seconds, "duration": _length, "channel": _channels}


def _wrong(obj: Any, checks: dict, what: str) -> str | None:
    """The first field of `obj` (a dataclass) that fails its check, as `what FIELD VALUE is not KIND`."""
    fields = vars(obj)
    for name, check in checks.items():
        if name in fields and not check(fields[name]):
            return f"{what}{name} {fields[name]!r:.40} is not {KINDS[check]}"
    return None


def unusable(item: Any) -> str | None:
    """Why lhotse cannot use a recording's, supervision's or cut's fields (a duration "abc", a sampling rate 0, a
    numeric text), None when it can."""
    if isinstance(item, Recording):
        if not isinstance(item.sources, list) or not item.sources:
            return "recording: sources must be a list of one or more sources"
        for source in item.sources:
            if not isinstance(getattr(source, "source", None), (str, bytes)):
                return f"recording source {getattr(source, 'source', None)!r:.40} is not a path or URL"
            if problem := _wrong(source, SOURCE, "recording source "):
                return problem
        return _wrong(item, RECORDING, "recording ")
    if isinstance(item, SupervisionSegment):
        return _wrong(item, SUPERVISION, "supervision ")
    if isinstance(item, Cut):  # its fields, not its properties (a MixedCut's computes them from its tracks)
        fields = vars(item)
        parts = [fields.get("recording"), *(fields.get("supervisions") or [])]
        parts += [getattr(track, "cut", None) for track in fields.get("tracks") or []]  # a MixedCut's
        return _wrong(item, CUT, "cut ") or next((p for part in parts if part is not None and (p := unusable(part))),
                                                 None)
    return None


def _good(items: Iterable[Item], path: Path, bad: list[tuple[str, Any]]) -> Iterator[Any]:
    """The items that are no XlsrError; the others go to `bad` as (location, error)."""
    for number, item in items:
        if isinstance(item, XlsrError):
            bad.append((f"{path}: line {number}", item))
        else:
            yield item


def lhotse_cuts(paths: list[str | Path]) -> Iterator[tuple[str, Any]]:
    """(location, cut or XlsrError) of what `paths` describe: a CutSet, read lazily, or a RecordingSet (+ its
    SupervisionSet, cut per supervision), read whole; a broken line is a bad item with its location."""
    loaded = [(Path(p), *load_lhotse(p)) for p in paths]
    sets = {kind: (path, items) for path, kind, items in loaded}
    if len(sets) != len(paths) or set(sets) not in ({"CutSet"}, {"RecordingSet"},
                                                    {"RecordingSet", "SupervisionSet"}):
        kinds = ", ".join(f"{p} ({kind})" for p, kind, _ in loaded)
        raise XlsrError(f"expected one CutSet, or a RecordingSet with or without its SupervisionSet; got {kinds}")
    if "CutSet" in sets:
        path, items = sets["CutSet"]
        return ((f"{path}: cut {n}" + ("" if isinstance(c, XlsrError) else f" {c.id!r}"), c) for n, c in items)
    bad: list[tuple[str, Any]] = []
    recordings = RecordingSet.from_recordings(_good(sets["RecordingSet"][1], sets["RecordingSet"][0], bad))
    if "SupervisionSet" not in sets:
        cuts = CutSet.from_manifests(recordings=recordings)
    else:
        supervisions = SupervisionSet.from_segments(_good(sets["SupervisionSet"][1], sets["SupervisionSet"][0], bad))
        cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
        cuts = cuts.trim_to_supervisions(keep_overlapping=False)
    source = " + ".join(str(p) for p in paths)
    return itertools.chain(bad, ((f"{source}: cut {n} {c.id!r}", c) for n, c in enumerate(cuts, 1)))


def cut_labels(cut: Cut, lang: str | None) -> tuple[str, str | None, str]:
    """(language code, text or None, speaker) of a cut from its supervisions, in time order; `lang` wins. XlsrError
    for a supervision with text that reaches outside the cut (`cut_into_windows` keeps them whole): its words are
    not all in the cut's audio, and a neighbouring cut would be given them too."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    outside = next((s for s in sups if s.text and (s.start < -SUPERVISION_SLACK
                                                   or s.end > cut.duration + SUPERVISION_SLACK)), None)
    if outside is not None:
        raise XlsrError(f"supervision {outside.id!r} ({outside.start:.3f} to {outside.end:.3f} s) reaches outside "
                        f"the cut (0 to {cut.duration:.3f} s), so its text is not all in the cut's audio; cut at "
                        f"supervisions with lhotse first (trim_to_supervisions)")
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
    try:
        code, text, speaker = cut_labels(cut, lang)
        path = whole_file(cut)
    except XlsrError:
        raise
    # a field `unusable` does not check (in a kind of cut it does not know) that lhotse fails on
    except (TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise XlsrError(f"fields lhotse cannot use ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
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


def import_lhotse(src: str | Path | list[str | Path], out_dir: str | Path, *, lang: str | None = None,
                  split: str = "train", max_bad_share: float = DEFAULT_MAX_BAD_SHARE,
                  show_progress: bool = True) -> ImportSummary:
    """lhotse manifest(s) -> DIR/<lang>/<split>.jsonl (+ FLAC under DIR/<lang>/audio for segments); the summary."""
    paths = [src] if isinstance(src, (str, Path)) else list(src)
    cuts = lhotse_cuts(paths)
    source = " + ".join(str(p) for p in paths)
    with ImportWriter(out_dir, source=source, unit="cuts", max_bad_share=max_bad_share) as writer:
        for where, cut in progress(cuts, desc="import lhotse", unit="cut", disable=not show_progress):
            if isinstance(cut, XlsrError):  # a manifest line that holds no cut (or recording, supervision)
                writer.skip(where, str(cut))
                continue
            try:
                import_cut(cut, writer, lang=lang, split=split)
            except ImportRefused:
                raise
            except XlsrError as exc:
                writer.skip(where, str(exc))
        return writer.finish()
