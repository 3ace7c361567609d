"""`xlsr stream`: transcribe audio as it arrives, printing text as soon as it is final.

    arecord -q -f S16_LE -r 16000 -c 1 -t raw | xlsr stream --model RUN_OR_CKPT -
    ffmpeg -loglevel quiet -i INPUT -f s16le -ac 1 -ar 16000 - | xlsr stream --model RUN_OR_CKPT -
    xlsr stream --model RUN_OR_CKPT recording.wav [--jsonl]

`-` reads raw 16-bit little-endian mono PCM at 16 kHz from stdin (a WAV, FLAC, Ogg or MP3 file piped there is
refused: give its path instead); a file is read and fed in pieces of
--piece-seconds, as a stream would deliver it (one piece in memory at a time, however long the file). The model
hears windows of --chunk-seconds with --stride-seconds (also spelled --chunk-stride, as in transcribe) of context
on each side (decode/streaming.py): text lags the audio by at most chunk - stride seconds (the first words: one
whole window). Greedy CTC.
The text goes to stdout as it becomes final; --jsonl prints one JSON line per step instead (seconds of audio
heard, the new tokens, their start times, and the text they add: all lines' "text" joined is the transcript).
Ctrl-C ends the stream as the end of the input does: the audio heard so far is transcribed, then exit code 130.
SIGTERM (how a service manager stops a process) does the same, with exit code 143; a second one stops at once.
A file found damaged part way is transcribed up to the damage, then the error is said (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from xlsr.cli import INTERRUPTED, check_seconds, finite_float
from xlsr.cli.transcribe import add_model_arguments
from xlsr.errors import AudioError, XlsrError
from xlsr.rates import SAMPLE_RATE

HELP = "transcribe a stream (stdin PCM or a file fed in pieces) as it arrives"
TERMINATED = 128 + signal.SIGTERM  # the shell's status for a process stopped by SIGTERM


def register(subparsers) -> None:
    """Add the `stream` subcommand."""
    p = subparsers.add_parser("stream", help=HELP, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="AUDIO_OR_-", help="an audio file, or - for raw s16le 16 kHz mono PCM on stdin")
    add_model_arguments(p)
    p.add_argument("--chunk-seconds", type=finite_float, default=10.0, help="window the model hears (default 10)")
    # transcribe's and evaluate's --chunk-stride: the same context, so either name is taken
    p.add_argument("--stride-seconds", "--chunk-stride", dest="stride_seconds", type=finite_float, default=2.0,
                   help="context on each side of a window (default 2; at most a quarter of the window, as in "
                   "transcribe)")
    p.add_argument("--piece-seconds", type=finite_float, default=0.5,
                   help="a file is fed in pieces this long (default 0.5)")
    p.add_argument("--jsonl", action="store_true", help="one JSON line per step instead of plain text")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (default auto)")
    p.set_defaults(func=run)


def run(args) -> int:
    """Feed the source to a StreamingTranscriber and print what becomes final."""
    # lazy: xlsr.decode imports torch; `xlsr --help` imports every command module
    import numpy as np

    from xlsr.data.audio import audio_blocks
    from xlsr.decode.chunking import check_chunk_seconds
    from xlsr.decode.streaming import StreamingTranscriber
    from xlsr.decode.transcribe import load_ctc_model

    if args.chunk_seconds <= 0 or args.stride_seconds < 0 or args.piece_seconds <= 0:
        raise XlsrError(f"--chunk-seconds and --piece-seconds must be > 0 and --stride-seconds >= 0; "
                        f"got {args.chunk_seconds:g}, {args.piece_seconds:g} and {args.stride_seconds:g}")
    check_seconds(chunk_seconds=args.chunk_seconds, stride_seconds=args.stride_seconds, piece_seconds=args.piece_seconds)
    check_chunk_seconds(args.chunk_seconds)
    if args.source != "-" and Path(args.source).is_dir():  # the reader would call it "no such audio file"
        raise XlsrError(f"{args.source}: a folder; xlsr stream reads one audio file, or - for stdin (xlsr transcribe "
                        f"takes folders)")
    # a file: read a piece at a time (a whole 10 h recording would be 2.3 GB at 16 kHz); the transcriber normalizes
    # each window if the model does
    pieces = _stdin_pieces(args.piece_seconds) if args.source == "-" else audio_blocks(args.source, args.piece_seconds)
    ctc = load_ctc_model(args.model, device=args.device, target_lang=args.target_lang, precision=args.precision)
    stream = StreamingTranscriber(ctc, chunk_s=args.chunk_seconds, stride_s=args.stride_seconds)
    shown = _Shown()
    stopped = damaged = None
    try:
        with _sigterm_raises():
            for piece in pieces:
                stream.feed(np.asarray(piece, dtype=np.float32))
                shown.show(stream, args.jsonl)
    except KeyboardInterrupt:  # the way to stop a microphone: the audio it sent is still transcribed
        stopped = "interrupted", INTERRUPTED
    except _Terminated:  # the way a service manager stops a process: the same
        stopped = "terminated", TERMINATED
    except AudioError as exc:  # only the reader raises it: a file damaged part way (its audio before is transcribed)
        if stream.seconds_heard == 0:
            raise
        damaged = exc
    stream.finish()
    shown.show(stream, args.jsonl)
    if not args.jsonl:
        print(flush=True)
    if damaged is not None:
        raise AudioError(f"{damaged}; the {stream.seconds_heard:.1f} s of audio before it are transcribed above")
    if stopped:
        print(f"xlsr: {stopped[0]}: {stream.seconds_heard:.1f} s of audio heard and transcribed", file=sys.stderr)
        return stopped[1]
    return 0


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread (a BaseException, as KeyboardInterrupt: no `except Exception` takes it)."""


@contextmanager
def _sigterm_raises():
    """While inside, SIGTERM raises _Terminated, so that a stream a service manager stops still transcribes what it
    heard. The handler before is put back on leaving: a second SIGTERM, during that last transcription, stops at
    once. Python lets only the main thread set handlers; in another, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _raise_terminated(signum, frame):
    raise _Terminated


class _Shown:
    """What has been printed of a stream: its tokens (a count) and its text."""

    def __init__(self):
        self.tokens = 0
        self.text = ""

    def show(self, stream, jsonl: bool) -> None:
        """Print the tokens that became final since the last call (with --jsonl, one line for them)."""
        if len(stream.tokens) == self.tokens:
            return
        text = stream.text
        # the text grows at its end; a word boundary just became a space between the old text and the new. Each
        # step prints only what it adds: a stream runs for hours, and its text so far on every line grew the
        # output as the square of the time
        new_text = text[len(self.text):] if text.startswith(self.text) else "\n" + text
        if jsonl:
            print(json.dumps({"heard": round(stream.seconds_heard, 3), "tokens": stream.tokens[self.tokens:],
                              "starts": stream.starts[self.tokens:], "text": new_text}, ensure_ascii=False),
                  flush=True)
        else:
            sys.stdout.write(new_text)
            sys.stdout.flush()
        self.tokens, self.text = len(stream.tokens), text


# how an encoded file starts (its first bytes): raw PCM that starts so is not to be met
CONTAINERS = {b"RIFF": "a WAV file", b"fLaC": "a FLAC file", b"OggS": "an Ogg file", b"ID3": "an MP3 file"}


def container(head: bytes) -> str | None:
    """What encoded file `head` (the first bytes of a stream) begins, or None for raw PCM."""
    return next((what for magic, what in CONTAINERS.items() if head.startswith(magic)), None)


def _stdin_pieces(seconds: float):
    """Float pieces of raw s16le PCM read from stdin as it comes; XlsrError if it starts as an encoded file does."""
    import numpy as np

    size = max(2, 2 * round(seconds * SAMPLE_RATE))
    leftover, head = b"", True
    while True:
        data = sys.stdin.buffer.read1(size) if hasattr(sys.stdin.buffer, "read1") else sys.stdin.buffer.read(size)
        if not data:
            return
        data = leftover + data
        if head:  # its header would be heard as a click, then the audio at the wrong rate or channels
            if len(data) < 4 and any(magic.startswith(data) for magic in CONTAINERS):
                leftover = data  # too little to tell yet
                continue
            what, head = container(data), False
            if what is not None:
                raise XlsrError(f"stdin: {what}, not raw PCM; give its path instead of - (xlsr stream --model M "
                                f"FILE), or pipe raw s16le 16 kHz mono (ffmpeg -i FILE -f s16le -ac 1 -ar 16000 -)")
        whole = len(data) // 2 * 2
        leftover = data[whole:]
        if whole:
            yield np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
