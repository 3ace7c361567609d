"""Transcription results kept as they are made, so that a stopped `xlsr transcribe` (or `xlsr evaluate`) resumes
where it was.

Each result is appended to OUT.partial (one JSON line, flushed) as soon as its batch is decoded. The same command
run again reads OUT.partial, skips the files already there and appends the rest; at the end OUT is written
atomically, one line per file in input order. A line torn by a kill is cut off the file (that file is transcribed
again, and the next result starts on a line of its own). Files that failed are not recorded: the same command
again tries them, and only them; OUT.partial is removed once every file is in OUT. The first line records the
settings the results were made with; a restart with other settings is refused (results of two models or decoders
would be mixed in one OUT); a file whose settings line itself was torn holds no result and starts over. One kept
by another version of xlsr, which records other settings (those before the checkpoint's resolved path and the
fingerprint of its files were recorded name only --model as typed, which may mean another checkpoint now), cannot
be checked against this run, so it is not resumed: that is one line saying so, and the file is left as it is, as is
a file whose first line is no settings line at all (not one of ours). Nothing but a torn settings line is removed
before OUT is written in full.

`xlsr evaluate` keeps its transcripts in the same way, in the .partial of its --hyps (else its --json) file: its
outputs are not copied from the lines but made from them (`results`), and the file is removed (`remove`) once they
are written.

With `by_file` (xlsr transcribe, xlsr evaluate), a result is found again by the file its audio path names,
resolved (links followed, made absolute), not by the path as typed: a rerun that types the same recordings otherwise
(relative or absolute, `dir/` or `dir/../dir`, through a link, from another folder) resumes them, and OUT names
each file as this run typed it (a result kept under another name is written with this run's). A relative path is
resolved against the folder the run that kept it was started in, which the settings line records ("cwd"), and a
line {"cwd": FOLDER} of its own where a later run started elsewhere appends (a file from before these records: against
this run's folder); so the same relative names typed in another folder are other recordings, not these.

Only where each result's line lies in OUT.partial, and its name, is kept in memory (some 300 bytes a file): the
results stay on disk and OUT is copied from their lines, so a job of a million files with timestamps (10-20 kB a
result in Python) holds no more than its file names. Lines end at "\n" alone: U+2028 and the like in a result's
text are no line ends.

Lines are UTF-8 JSON. A string that UTF-8 cannot hold (a file name whose bytes are not UTF-8: Python holds them as
lone surrogates) is written as a \\udcXX escape (json_line): valid JSON that Python's json reads back to the same
str, so the file is found again on a rerun and os.fsencode gives its name's bytes back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from xlsr.atomic import json_line, write_file
from xlsr.errors import XlsrError
from xlsr.jsonl import json_object, torn_settings_line

RESTART = "run that command again to finish it, or delete the file to start over"

Advice = str | Callable[[dict], str | None]  # what to tell when a setting changed (None: no change that matters)


class PartialResults:
    """The OUT.partial file of one output OUT."""

    def __init__(self, out: str | Path, settings: dict, *, advice: dict[str, Advice] | None = None,
                 by_file: bool = False, command: str = "xlsr transcribe", output: str = "OUT"):
        """`advice`: for a setting whose change makes the default advice wrong (e.g. the checkpoint was rewritten:
        running that command again cannot finish it), what to tell instead: a text, where "{was}" and "{now}"
        become the setting's earlier and current values, or a function of the settings the file records that
        returns it. `by_file`: results are found by the files their paths name (see the module's text).
        `command` and `output`: how a refusal names the command that keeps the file and the option of `out`."""
        self.out = Path(out)
        self.command, self.output = command, output
        self.path = self.out.with_name(self.out.name + ".partial")
        self.settings = json.loads(json.dumps(settings))  # as it reads back from the file
        self.by_file = by_file
        self.here = os.getcwd() if by_file else None  # what this run's relative paths are relative to
        self.folder_on_file = None  # the folder the file's last results are relative to, as its last "cwd" line says
        # key (the audio path, or with by_file its file) -> where its result's line lies (offset, length), its name
        self.records: dict[str, tuple[int, int, str]] = {}
        if self.path.is_file():
            with open(self.path, "rb") as f:
                first = f.readline()
                if torn_settings_line(first):
                    torn = True  # torn in its first line, before any result: nothing to keep
                else:
                    torn = False
                    header = json_object(first.decode("utf-8", errors="replace")) if first.endswith(b"\n") else {}
                    self._check_settings(header, advice)
                    self._note_folder(header)
                    end = self._index(f, len(first))
            if torn:
                self.path.unlink()
            elif end < self.path.stat().st_size:  # a last line a kill cut short: cut off, so the next result has a
                with open(self.path, "r+b") as f:  # line of its own
                    f.truncate(end)
        self._file = None

    def _check_settings(self, first: dict, advice: dict[str, Advice] | None) -> None:
        """XlsrError unless the file's first line records this run's settings."""
        made_with = first.get("settings")
        if not isinstance(made_with, dict):
            raise XlsrError(f"{self.path}: not a file of results kept by {self.command} (its first line records "
                            f"no settings); it is left as it is: move it away or give another {self.output}")
        if made_with == self.settings:
            return
        changed = sorted(k for k in {*made_with, *self.settings} if made_with.get(k) != self.settings.get(k))
        run = f"{self.path}: results of an earlier run" + (f" with other settings ({', '.join(changed)})"
                                                           if changed else "")
        if made_with.keys() != self.settings.keys():  # another version's: the advice below would not do
            raise XlsrError(f"{run}, kept by another version of {self.command}, which records other settings "
                            f"({_differing_names(made_with, self.settings)}), so they cannot be checked "
                            f"against this run; they are left as they are: finish them with that version, "
                            f"or move the file away (or give another {self.output}) to start over")
        # a setting whose advice finds no change that matters (a checkpoint moved whole): the same run
        changed = [k for k in changed if not (callable((advice or {}).get(k)) and advice[k](made_with) is None)]
        if not changed:
            return
        k = next((k for k in changed if k in (advice or {})), None)
        if k is None:
            tell = RESTART
        elif callable(advice[k]):
            tell = advice[k](made_with)
        else:  # replace, not str.format: a path in the advice may hold braces
            tell = advice[k].replace("{was}", str(made_with.get(k))).replace("{now}", str(self.settings.get(k)))
        raise XlsrError(f"{run}; {tell}")

    def _index(self, f, offset: int) -> int:
        """Record where each whole result line after `offset` lies; the end of the last whole line."""
        for line in f:
            if not line.endswith(b"\n"):
                break  # torn by a kill
            record = json_object(line.decode("utf-8", errors="replace"))
            if isinstance(record.get("audio"), str):
                name = record["audio"]
                self.records[self.key(name, self.folder_on_file)] = (offset, len(line), name)
            else:
                self._note_folder(record)
            offset += len(line)
        return offset

    def _note_folder(self, line: dict) -> None:
        """Results after `line` are relative to the folder it records, if it records one."""
        if isinstance(line.get("cwd"), str):
            self.folder_on_file = line["cwd"]

    def key(self, audio: str, folder: str | None = None) -> str:
        """What finds the result of `audio`, a path relative to `folder` (default: this run's): the path itself,
        or with `by_file` the file it names (links followed, made absolute)."""
        if not self.by_file:
            return audio
        return os.path.realpath(os.path.join(folder or self.here, audio))

    def done(self) -> set[str]:
        """The keys (key()) of the audio files already transcribed by an earlier run of the command."""
        return set(self.records)

    def append(self, record: dict) -> None:
        """Keep one result (on disk at once)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.is_file() or self.path.stat().st_size == 0
            self._file = open(self.path, "ab")  # noqa: SIM115 - closed by finish()/close()
            folder = {"cwd": self.here} if self.by_file and self.folder_on_file != self.here else {}
            if new:
                self._file.write(json_line({"settings": self.settings, **folder}).encode("utf-8"))
            elif folder:  # this run's relative paths are relative to another folder than the results above
                self._file.write(json_line(folder).encode("utf-8"))
            self.folder_on_file = self.here
        line = json_line(record).encode("utf-8")
        offset = self._file.tell()
        self._file.write(line)
        self._file.flush()
        self.records[self.key(record["audio"])] = (offset, len(line), record["audio"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def finish(self, order: list[str]) -> list[str]:
        """Write OUT (the kept results in `order`, audio paths not kept left out), copied line by line from
        OUT.partial (a result kept under another name of its file: with the name in `order`); returns the audio
        paths written. OUT.partial is removed when every path in `order` has its result, and kept otherwise, so
        that a rerun retries only the missing."""
        self.close()
        found = [(a, self.records.get(self.key(a))) for a in order]
        written = [(a, where) for a, where in found if where is not None]
        self.out.parent.mkdir(parents=True, exist_ok=True)  # append() makes it, but a run may keep no result at all
        write_file(self.out, lambda tmp: self._copy_lines(written, tmp))
        if len(written) == len(order):
            self.path.unlink(missing_ok=True)
        return [a for a, _ in written]

    def results(self, order: list[str]) -> Iterator[tuple[str, dict]]:
        """(audio path, kept result) of each path of `order` that has one (a path named twice: once), read back
        from OUT.partial one at a time."""
        wanted = {a: self.records[k] for a in order if (k := self.key(a)) in self.records}
        if not wanted:
            return
        self.close()  # every line written is flushed; closed all the same before it is read
        with open(self.path, "rb") as f:
            for a, (offset, length, _) in wanted.items():
                f.seek(offset)
                yield a, json_object(f.read(length))

    def remove(self) -> None:
        """Delete OUT.partial: what it kept is in the outputs made from it (`results`)."""
        self.close()
        self.path.unlink(missing_ok=True)

    def _copy_lines(self, written: list[tuple[str, tuple[int, int, str]]], path: Path) -> None:
        """Write the result lines `written` (audio path, records entry), in that order, to `path`."""
        with path.open("wb") as out:
            if not written:
                return
            with open(self.path, "rb") as f:
                for a, (offset, length, name) in written:
                    f.seek(offset)
                    line = f.read(length)
                    if name != a:  # typed otherwise by the run that kept it: named as this run types it
                        line = json_line({**json_object(line), "audio": a}).encode("utf-8")
                    out.write(line)


def decoding_settings(model: str | Path, *, lm: str | None, lexicon: str | None, options: dict,
                      command: str = "xlsr transcribe", output: str = "OUT") -> tuple[Path, dict, dict[str, Advice]]:
    """The checkpoint `model` (--model as typed) means now, the settings a results file of decoding with it records,
    and the advice (PartialResults) for a rerun whose model, LM or lexicon is not what the results were made with.

    --model as typed is not the model: a run folder means its best checkpoint (else its last), and training may
    write a new one between a stop and the rerun. The checkpoint it resolves to and its files' fingerprint are
    recorded instead, so that a rerun never adds another model's results to the earlier ones. Likewise the LM and
    lexicon: `xlsr lm build` replaces its own LM in place, so --lm as typed may be another LM now. Their fingerprint
    joins the model's (a key of its own would make every results file kept so far read as another version's).
    `options`: the other settings that change a result (beam, weights, chunking, ...), recorded as given."""
    # lazy: transcribe.py imports torch, which the refusals of a results file need not
    from xlsr.decode.output_files import decoder_files
    from xlsr.decode.transcribe import files_fingerprint, resolve_checkpoint

    checkpoint, model_files = resolve_checkpoint(model)
    decoding = decoder_files(lm, lexicon)
    fingerprint = f"{model_files} {files_fingerprint(decoding)}" if decoding else model_files
    settings = {"model": str(checkpoint), "model_files": fingerprint, "lm": lm, "lexicon": lexicon, **options}
    decoder_inputs = [(option, path) for option, path in (("--lm", lm), ("--lexicon", lexicon)) if path]
    given = " and ".join(f"{option} {path}" for option, path in decoder_inputs)
    # a checkpoint not there now (moved, deleted) is gone: not another checkpoint, nor one saved again
    model_gone = [] if checkpoint.exists() else [f"--model {model}"]

    def files_changed(made_with: dict) -> str:
        """Why the fingerprint the results were made with differs from this run's, in words."""
        if (made_with.get("lm"), made_with.get("lexicon")) != (lm, lexicon):
            return RESTART  # nothing saved again: the command is typed otherwise
        was_model, _, was_decoding = str(made_with.get("model_files")).partition(" ")
        if decoding and not was_decoding and was_model == model_files:  # kept before the LM's joined the model's
            return (f"kept by an earlier version of {command}, which did not record what {given} was, so "
                    f"they cannot be checked against it; they are left as they are: finish them with that version, "
                    f"or move the file away (or give another {output}) to start over")
        gone = [*model_gone, *(f"{option} {path}" for option, path in decoder_inputs if not Path(path).exists())]
        if gone:
            return (f"{' and '.join(gone)}: no such file now (moved?): give the one they were made with to finish "
                    f"them, or delete the file to start over")
        saved = [*([(f"the checkpoint {checkpoint}", "a new best or last from training?")]
                   if was_model != model_files else []),
                 *([(given, "built again?")] if decoding and was_decoding != files_fingerprint(decoding) else [])]
        if not saved:
            return RESTART
        return (f"{' and '.join(name for name, _ in saved)} {'were' if len(saved) > 1 else 'was'} saved again since "
                f"({' '.join(why for _, why in saved)}), so what the results were made with is gone: delete the "
                f"file to start over")

    def model_changed(made_with: dict) -> str | None:
        """What to do when --model means another checkpoint than the results were made with, in words; None when it
        is that checkpoint moved (its folder renamed or moved: the one recorded is gone, and its files' names, sizes
        and times are those the results were made with)."""
        was = made_with.get("model")
        if not Path(str(was)).exists() and made_with.get("model_files") == fingerprint and checkpoint.exists():
            return None
        if model_gone:
            return (f"--model {model}: no such file now (moved?); they were made with the checkpoint {was}: give "
                    f"it to finish them, or delete the file to start over")
        return (f"they were made with the checkpoint {was}, and --model {model} now means {checkpoint}: give "
                f"--model {was} to finish them, or delete the file to start over")

    advice = {"model": model_changed, "model_files": files_changed}
    return checkpoint, settings, advice


def _differing_names(was: dict, now: dict) -> str:
    """Which settings one version records and the other does not, as "x not recorded, y unknown"."""
    missing, unknown = sorted(now.keys() - was.keys()), sorted(was.keys() - now.keys())
    return ", ".join([*(f"{k} not recorded" for k in missing), *(f"{k} unknown here" for k in unknown)])
