"""Transcription: a CTC model from a run folder or checkpoint, batched over files, greedy or LM beam search.

Files are loaded and decoded in batches of similar length (sorted by duration, bounded by
`max_batch_seconds` of padded audio), whichever the CNN: each row carries its length, and the model
gives it what it gets alone (the group-norm CNN normalizes layer 0 over each row's valid steps).
Recordings longer than `chunk_seconds` go through overlapping windows merged by time
(decode/chunking.py). An unreadable file is recorded as a failure with its one-line reason and the
others are still transcribed. With `decode_workers`, every header (read first, to sort by length) and then the
audio is decoded in worker processes (data/decoder_pool.py), ahead of the model and in the order it needs: a
decoder that crashes on a damaged file (a segfault in libsndfile) costs that file, listed as a failure, not the
job (which a rerun would otherwise repeat at the same file). A batch that runs out of memory is decoded again in
halves; a file that does not fit alone is a failure too, whose line says what to lower.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from xlsr.atomic import write_jsonl as _write_jsonl_atomic
from xlsr.data.audio import AUDIO_SUFFIXES, UNREADABLE_AUDIO_SUFFIXES, files_under, unreadable_format
from xlsr.data.batching import pad_waveforms
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S, DecoderPool, length_or_reason, waveform_or_reason
from xlsr.decode.beam import BeamSearchConfig, decoder_for_lm
from xlsr.decode.chunking import chunked_logits, window_context
from xlsr.decode.greedy import greedy_decode
from xlsr.decode.hypothesis import Hypothesis
from xlsr.devices import is_out_of_memory, pick_device
from xlsr.errors import CheckpointError, XlsrError
from xlsr.interop.load import load_pretrained, resolve_run_folder
from xlsr.model import Wav2Vec2ForCTC
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE
from xlsr.text.vocab import WORD_BOUNDARY, Vocabulary, guess_kind

Decoder = Callable[..., list[Hypothesis]]  # (logits (B,T,V), frame_lengths (B,), timestamps=) -> hypotheses


@dataclass
class CTCModel:
    """A CTC model ready for inference, with its vocabulary and the input normalisation it expects."""
    model: torch.nn.Module
    vocab: object  # xlsr.text.vocab.Vocabulary
    normalize: bool  # per-utterance z-norm of the waveform (layer-norm / XLSR models)
    source: str
    precision: str = "fp32"  # "bf16": the model under bf16 autocast (the CTC logits stay fp32)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def logits(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waveforms + (B,) lengths -> fp32 logits (B, T, V) and frame lengths (B,)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.model(waveforms, lengths)
        return out.logits.float(), out.frame_lengths


PRECISIONS = ("fp32", "bf16")  # of inference


def load_ctc_model(path: str | Path, *, device: str | torch.device = "cpu", labels: str | None = None,
                   target_lang: str | None = None, precision: str = "fp32") -> CTCModel:
    """Load a fine-tuned model: a run folder (its best checkpoint), our checkpoint, an HF dir or a fairseq .pt.

    `target_lang` picks the language of an MMS checkpoint with per-language adapters (see load_pretrained).
    `precision` "bf16" runs the model under bf16 autocast: faster on GPUs and on CPUs with AMX (docs/speed.md),
    slower on CPUs without native bf16.
    """
    if precision not in PRECISIONS:
        raise XlsrError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if isinstance(device, str):
        device = pick_device(device)  # a GPU this machine lacks: one line before loading anything
    path = resolve_run_folder(path)  # messages below name the checkpoint, not the run folder
    loaded = load_pretrained(path, target_lang=target_lang)
    if not isinstance(loaded.model, Wav2Vec2ForCTC):
        raise CheckpointError(f"{path}: a {type(loaded.model).__name__} has no CTC head; fine-tune it first "
                              f"(xlsr finetune --init {path} ...)")
    if not loaded.vocab:
        raise CheckpointError(f"{path}: the CTC head has no vocabulary saved with it")
    kind = labels or (loaded.metadata or {}).get("labels") or guess_kind(loaded.vocab)
    try:
        vocab = Vocabulary(list(loaded.vocab), kind)
    except XlsrError as exc:
        raise CheckpointError(f"{path}: unusable vocabulary ({exc})") from None
    model = loaded.model.to(device).eval()
    cfg = loaded.config
    return CTCModel(model, vocab, bool(cfg.normalize_waveform), str(path), precision)


def resolve_checkpoint(path: str | Path) -> tuple[Path, str]:
    """The checkpoint `path` means now, and a fingerprint of its files.

    A run folder means its best checkpoint, else its last, and either may be a link training moves: the path
    returned has the links followed, so that loading it later loads what was fingerprinted even if training
    moves them meanwhile. The fingerprint hashes the name, size and modification time (ns) of each file of the
    checkpoint (the folder's files, or the file), not their contents: a checkpoint saved again (training writes
    a new best or last over the old) differs, and reading gigabytes of weights to tell is not needed. A path
    that does not exist is returned as it is (loading it says why), with the fingerprint of nothing."""
    path = resolve_run_folder(path)
    if not path.exists():
        return path, ""
    path = Path(os.path.realpath(path))
    if path.is_file() and path.name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = path.parent  # a file of a checkpoint folder means the folder (load_pretrained): fingerprint it all
    files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
    return path, files_fingerprint(files)


def files_fingerprint(files: Iterable[str | Path]) -> str:
    """A hash of each file's name, size and modification time (ns), in the order given; a file that does not
    exist counts as absent (so one made or removed since changes it too). A file written again differs, whatever
    it holds, and nothing is read but the metadata."""
    digest = hashlib.sha256()
    for f in map(Path, files):
        try:
            st = f.stat()
        except FileNotFoundError:
            digest.update(os.fsencode(f.name) + b"\0-\n")
            continue
        digest.update(os.fsencode(f.name) + b"\0" + f"{st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def make_decoder(ctc: CTCModel, *, lm: str | Path | None = None, lexicon: str | Path | None = None,
                 beam: int | None = None, lm_weight: float | None = None, word_score: float | None = None
                 ) -> Decoder:
    """Greedy decoding, or flashlight beam search when an LM, a lexicon or a beam size is given; timestamps by the
    model's own frame stride (its CNN's)."""
    frame_stride_s = ctc.model.config.total_stride / SAMPLE_RATE
    if lm is None and lexicon is None and not beam:
        def greedy(logits, frame_lengths, *, timestamps=False):
            return greedy_decode(logits, frame_lengths, ctc.vocab, timestamps=timestamps, frame_stride_s=frame_stride_s)
        return greedy
    settings = {k: v for k, v in (("beam_size", beam), ("lm_weight", lm_weight), ("word_score", word_score))
                if v is not None}
    decoder = decoder_for_lm(ctc.vocab, lm, lexicon=lexicon, config=BeamSearchConfig(**settings),
                             frame_stride_s=frame_stride_s)
    return decoder.decode


# --- inputs --------------------------------------------------------------------------------------------

@dataclass
class Failure:
    """A file that could not be transcribed, and why (one line)."""
    audio: str
    error: str


def find_audio(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Audio files named directly or found (recursively, sorted, linked subfolders too, as `xlsr data import folder`
    finds them: data/audio.py's files_under) in folders; missing paths, and recordings in a folder whose format xlsr
    does not read (UNREADABLE_AUDIO_SUFFIXES), are failures (a broken link fails as it is read, naming itself)."""
    files: list[Path] = []
    failures: list[Failure] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = [f for f in files_under(p) if f.suffix.lower() in AUDIO_SUFFIXES + UNREADABLE_AUDIO_SUFFIXES]
            files.extend(f for f in found if f.suffix.lower() in AUDIO_SUFFIXES)
            failures.extend(Failure(str(f), unreadable_format(f))
                            for f in found if f.suffix.lower() in UNREADABLE_AUDIO_SUFFIXES)
            if not found:
                failures.append(Failure(str(p), f"{p}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder"))
        elif p.is_file() and p.suffix.lower() in (".jsonl", ".tsv"):  # a manifest's recordings, not itself
            failures.append(Failure(str(p), f"{p}: a manifest, not audio: give its recordings (files or folders), or "
                                            f"score them with `xlsr evaluate --manifest {p}`"))
        elif p.is_file():
            files.append(p)
        else:
            failures.append(Failure(str(p), f"{p}: no such file or directory"))
    return files, failures


# --- transcription ----------------------------------------------------------------------------------------

@dataclass
class Transcription:
    """One file's result: its duration and the decoder's best hypothesis."""
    audio: str
    duration: float
    hypothesis: Hypothesis
    extra: dict = field(default_factory=dict)
    kind: str = "chars"  # the model's labels: a word's characters are joined as they are, its phones with spaces
    word_boundary: bool = False  # the model's vocabulary has `|`: every result has word spans, a one-word one too

    def to_dict(self) -> dict:
        out = {"audio": self.audio, "duration": round(self.duration, 3), **self.hypothesis.to_dict(), **self.extra}
        hyp = self.hypothesis
        if hyp.timestamps is not None:
            # Each token spans its frames on the decoded path (a decoder without end frames: up to the next start).
            ends = hyp.end_timestamps or [*hyp.timestamps[1:], round(self.duration, 3)]
            ends = [min(e, round(self.duration, 3)) for e in ends]  # the last frame may reach past the audio
            out["timestamps"] = [{"token": t, "start": s, "end": e}
                                 for t, s, e in zip(hyp.tokens, hyp.timestamps, ends)]
            spans = word_spans(out["timestamps"], " " if self.kind == "phones" else "")
            # Only where the tokens show where words meet (a vocabulary with `|`: then on every line, one word or
            # none too): a lexicon decoder over a vocabulary without `|` knows its words but not which tokens each
            # one spans.
            shown = self.word_boundary or WORD_BOUNDARY in hyp.tokens or hyp.words
            if shown and (hyp.words is None or len(spans) == len(hyp.words)):
                out["word_timestamps"] = spans
        return out


def word_spans(token_spans: list[dict], sep: str = "") -> list[dict]:
    """Words from token spans split at the word boundary `|`: each word's tokens joined by `sep` (characters: "",
    phones: " "), from its first token's start to its last token's end."""
    words, current = [], []
    for span in [*token_spans, {"token": WORD_BOUNDARY}]:
        if span["token"] != WORD_BOUNDARY:
            current.append(span)
            continue
        if current:
            words.append({"word": sep.join(s["token"] for s in current), "start": current[0]["start"],
                          "end": current[-1]["end"]})
        current = []
    return words


def transcribe_files(ctc: CTCModel, files: list[Path], *, decoder: Decoder | None = None,
                     timestamps: bool = False, chunk_seconds: float | None = 30.0, chunk_stride: float = 2.0,
                     max_batch_seconds: float = 60.0, show_progress: bool = True,
                     on_result: Callable[[Transcription], None] | None = None, decode_workers: int = 0,
                     decode_timeout: float | None = DEFAULT_TIMEOUT_S) -> tuple[list[Transcription], list[Failure]]:
    """Transcribe `files` in length-sorted batches; returns results in input order and the failures.
    `on_result`, when given, is called with each result as soon as it is decoded (to keep it on disk, say) and the
    results are not kept (the list returned is empty): a job of a million files would hold them all (2-16 kB each).
    `decode_workers` processes decode the audio ahead of the model (`_decoded`), so that a decoder that crashes
    costs its file, not the job (the CLI's default is 1); 0, the library's default: decoded in this process, one
    file at a time (spawned workers re-import the caller's main module, which a script without an
    `if __name__ == "__main__":` guard would run again). With workers, a file whose decoding takes more than
    `decode_timeout` seconds (None: no limit) is stopped and listed as failed ("decoder hung")."""
    if decode_workers < 0:
        raise XlsrError(f"decode_workers: must be 0 or more, got {decode_workers}")
    decoder = decoder or make_decoder(ctc)
    sized, failures = _sort_by_length(files, decode_workers, decode_timeout)
    chunk_samples = int(chunk_seconds * SAMPLE_RATE) if chunk_seconds else None
    results: dict[int, Transcription] = {}
    bar = progress(total=len(sized), desc="transcribe", unit="file", disable=not show_progress)
    pending: list[tuple[int, Path, torch.Tensor]] = []

    def keep(pos: int, path: Path, wave: torch.Tensor, hyp: Hypothesis, extra: dict | None = None) -> None:
        result = Transcription(str(path), wave.numel() / SAMPLE_RATE, hyp, extra or {}, kind=ctc.vocab.kind,
                               word_boundary=ctc.vocab.word_boundary_id is not None)
        if on_result is not None:
            on_result(result)
        else:
            results[pos] = result

    def flush() -> None:
        if pending:
            hyps = _decode_fitting(ctc, pending, decoder, timestamps)
            for (pos, path, wave), hyp in zip(pending, hyps):
                if isinstance(hyp, Failure):
                    failures.append(hyp)
                else:
                    keep(pos, path, wave, hyp)
            bar.update(len(pending))
            pending.clear()

    ahead = int(max_batch_seconds * SAMPLE_RATE)
    with _decoded(sized, ctc.normalize, decode_workers, ahead, decode_timeout) as waves:
        for (_, pos, path), decoded in zip(sized, waves):
            reason = decoded if isinstance(decoded, str) else _too_short(ctc, path, len(decoded))
            if reason is not None:
                failures.append(Failure(str(path), reason))
                bar.update(1)
                continue
            wave = torch.from_numpy(decoded)
            if chunk_samples and wave.numel() > chunk_samples:
                hyp = _decode_chunked_fitting(ctc, path, wave, decoder, timestamps, chunk_seconds, chunk_stride,
                                              max_batch_seconds)
                if isinstance(hyp, Failure):
                    failures.append(hyp)
                else:
                    keep(pos, path, wave, hyp, {"chunked": True})
                bar.update(1)
                continue
            longest = max([wave.numel()] + [w.numel() for _, _, w in pending])
            if pending and longest * (len(pending) + 1) > max_batch_seconds * SAMPLE_RATE:
                flush()
            pending.append((pos, path, wave))
    flush()
    bar.close()
    order = {str(f): i for i, f in enumerate(files)}
    failures.sort(key=lambda fl: order.get(fl.audio, -1))
    return [results[k] for k in sorted(results)], failures


@contextmanager
def _decoded(sized: list[tuple[int, int, Path]], normalize: bool, workers: int, ahead: int,
             timeout: float | None = None) -> Iterator[Iterator[np.ndarray | str]]:
    """The waveform of each file of `sized` (samples, position, path), in that order, or the line saying why it has
    none. With `workers`, decoded in that many processes (data/decoder_pool.py): a decoder that kills its process
    costs its file ("decoder crashed (killed by SIGSEGV)"), as does one that hangs past `timeout` seconds, and files are decoded while the model runs, up to
    `ahead` samples of them (at least one file) beyond the one the caller holds: a batch's worth bounds the memory
    that waveforms waiting here take, whatever the number of files. Leaving the block stops the workers."""
    work = partial(waveform_or_reason, normalize=normalize)
    paths = [path for _, _, path in sized]
    if workers == 0 or not paths:
        yield map(work, paths)
        return
    with DecoderPool(min(workers, len(paths)), work, failed=str, timeout=timeout) as pool:
        yield pool.map_in_order(paths, [n for n, _, _ in sized], ahead)


def _sort_by_length(files: list[Path], workers: int = 0, timeout: float | None = None
                    ) -> tuple[list[tuple[int, int, Path]], list[Failure]]:
    """(samples, input position, path) of each readable file, shortest first, and the unreadable ones. The headers
    are read in `workers` processes when given: parsing one is the decoder's work too, and may crash it."""
    failures: list[Failure] = []
    sized: list[tuple[int, int, Path]] = []
    if workers and files:
        with DecoderPool(min(workers, len(files)), length_or_reason, failed=str, timeout=timeout) as pool:
            lengths = dict(pool.map(enumerate(files)))
    else:
        lengths = {i: length_or_reason(f) for i, f in enumerate(files)}
    for i, f in enumerate(files):
        if isinstance(lengths[i], str):
            failures.append(Failure(str(f), lengths[i]))
        else:
            sized.append((lengths[i], i, f))
    sized.sort()
    return sized, failures


def _too_short(ctc: CTCModel, path: Path, num_samples: int) -> str | None:
    """The line saying `path` is shorter than one frame of the model, or None."""
    need = ctc.model.config.receptive_field
    if num_samples < need:
        return (f"{path}: {num_samples} samples is shorter than one frame of the model "
                f"({need} samples, {need / SAMPLE_RATE * 1000:.0f} ms)")
    return None


def _decode_batch(ctc: CTCModel, waves: list[torch.Tensor], decoder: Decoder, timestamps: bool) -> list[Hypothesis]:
    """Zero-pad a batch, run the model once, decode every row."""
    batch, lengths = pad_waveforms(waves)
    logits, frames = ctc.logits(batch.to(ctc.device), lengths.to(ctc.device))
    return decoder(logits.cpu(), frames.cpu(), timestamps=timestamps)


def _decode_fitting(ctc: CTCModel, items: list[tuple[int, Path, torch.Tensor]], decoder: Decoder,
                    timestamps: bool) -> list[Hypothesis | Failure]:
    """_decode_batch of (position, path, waveform) items; on out of memory, each half again (at worst one file
    at a time); a file that does not fit alone becomes a Failure whose line says what to lower."""
    try:
        return _decode_batch(ctc, [w for _, _, w in items], decoder, timestamps)
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        if not is_out_of_memory(exc):
            raise
    if ctc.device.type == "cuda":
        torch.cuda.empty_cache()  # the failed attempt's cached blocks, before the smaller batches
    if len(items) == 1:
        return [_out_of_memory_failure(ctc, items[0][1], items[0][2].numel())]
    half = len(items) // 2
    return (_decode_fitting(ctc, items[:half], decoder, timestamps)
            + _decode_fitting(ctc, items[half:], decoder, timestamps))


def _out_of_memory_failure(ctc: CTCModel, path: Path, samples: int) -> Failure:
    seconds = samples / SAMPLE_RATE
    tips = [f"lower --chunk-seconds below {round(seconds, 1):g} (recordings longer than it are decoded in windows)"]
    if ctc.device.type == "cuda":
        tips += ["use --precision bf16"] * (ctc.precision == "fp32") + ["or --device cpu"]
    return Failure(str(path), f"{path}: out of {ctc.device.type} memory decoding {seconds:.1f} s of audio at once; "
                              + ", ".join(tips))


def _decode_chunked(ctc: CTCModel, wave: torch.Tensor, decoder: Decoder, timestamps: bool,
                    chunk_seconds: float, chunk_stride: float, windows_per_batch: int) -> Hypothesis:
    """Logits of overlapping windows (up to `windows_per_batch` through the model at once) merged by time, then one
    decoding pass over the whole recording."""
    logits = chunked_logits(wave, ctc.logits, chunk_s=chunk_seconds, stride_s=window_context(chunk_seconds, chunk_stride),
                            batch_size=windows_per_batch, frame_samples=ctc.model.config.total_stride,
                            receptive_field=ctc.model.config.receptive_field, device=ctc.device)
    return decoder(logits.unsqueeze(0), torch.tensor([logits.shape[0]]), timestamps=timestamps)[0]


def _decode_chunked_fitting(ctc: CTCModel, path: Path, wave: torch.Tensor, decoder: Decoder, timestamps: bool,
                            chunk_seconds: float, chunk_stride: float, max_batch_seconds: float
                            ) -> Hypothesis | Failure:
    """_decode_chunked with as many windows at once as `max_batch_seconds` holds; on out of memory, half as many
    (at worst one window at a time); a window that does not fit alone becomes a Failure saying what to lower."""
    windows = max(1, int(max_batch_seconds // chunk_seconds))
    while True:
        try:
            return _decode_chunked(ctc, wave, decoder, timestamps, chunk_seconds, chunk_stride, windows)
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(exc):
                raise
        if ctc.device.type == "cuda":
            torch.cuda.empty_cache()
        if windows == 1:
            return _out_of_memory_failure(ctc, path, int(chunk_seconds * SAMPLE_RATE))
        windows //= 2


def check_output_file(path: str | Path) -> Path:
    """`path` as a Path, or XlsrError when it names a folder (checked before hours of decoding, not after)."""
    path = Path(path)
    if path.is_dir():
        raise XlsrError(f"{path}: is a folder; give a file name for the output")
    return path


def write_jsonl(path: str | Path, records: Iterable[dict]) -> Path:
    """Write one JSON object per line (atomically: temp file, then rename), creating the folder; a file name that
    is not UTF-8 is kept as \\u escapes (atomic.json_line)."""
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _write_jsonl_atomic(path, records)
