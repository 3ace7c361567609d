"""`xlsr synth` stopped midway (a kill, Ctrl-C, a full disk) and run again: no manifest is left naming audio of
another call, synth.json keeps the languages of earlier calls, and Ctrl-C with workers ends in one line."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import soundfile as sf

from xlsr.data.manifest import read_manifest
from xlsr.data.synth import corpus as synth_corpus
from xlsr.data.synth import synthesize_corpus

KW = dict(speakers_per_lang=3, words_per_utt=(3, 6), augment="none", show_progress=False)


def _listed_audio_matches(out) -> list[str]:
    """The ids of the utterances of every manifest in `out` whose audio file is not the length its line says."""
    wrong = []
    for manifest in sorted(out.glob("*/*.jsonl")):
        for utt in read_manifest(manifest):
            if sf.info(utt.audio).frames != utt.num_samples:
                wrong.append(utt.id)
    return wrong


def _files(out) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "synth.json"}


def test_a_rewrite_stopped_midway_leaves_no_manifest_naming_audio_of_another_call(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 6, seed=0, **KW)
    render, calls = synth_corpus.render, []

    def killed_at_the_third(*args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[0].id)
        return render(*args)

    monkeypatch.setattr(synth_corpus, "render", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):  # another seed: it-train-00000 and 00001 are overwritten with other speech
        synthesize_corpus(out, ["it"], 6, seed=1, **KW)
    monkeypatch.undo()
    assert calls == ["it-train-00000", "it-train-00001"]
    assert _listed_audio_matches(out) == []

    synthesize_corpus(out, ["it"], 6, seed=1, **KW)  # run again: the corpus an uninterrupted call writes
    synthesize_corpus(tmp_path / "fresh", ["it"], 6, seed=1, **KW)
    assert _files(out) == _files(tmp_path / "fresh")


def test_a_full_disk_while_synth_json_is_written_keeps_earlier_languages_in_the_record(tmp_path, monkeypatch):
    out = tmp_path / "corpus"
    synthesize_corpus(out, ["it"], 3, **KW)
    write_text = type(out).write_text

    def disk_full_halfway(self, data, *args, **kwargs):
        if "synth.json" in self.name:  # synth.json or a temporary file of it
            write_text(self, data[:len(data) // 2], *args, **kwargs)
            raise OSError(28, "No space left on device")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(type(out), "write_text", disk_full_halfway)
    with pytest.raises(OSError, match="No space left"):
        synthesize_corpus(out, ["es"], 3, **KW)
    monkeypatch.undo()
    assert list(json.loads((out / "synth.json").read_text(encoding="utf-8"))["languages"]) == ["it"]
    synthesize_corpus(out, ["es"], 3, **KW)  # space made, the call run again
    assert list(json.loads((out / "synth.json").read_text(encoding="utf-8"))["languages"]) == ["it", "es"]
    synthesize_corpus(out, ["it"], 3, **KW)  # it is still synth's own: not refused


@pytest.mark.parametrize("files", [8, 1], ids=["both workers rendering", "a worker perhaps still starting"])
def test_ctrl_c_with_workers_ends_in_one_line_without_worker_tracebacks(tmp_path, files):
    # a worker still importing when Ctrl-C came printed its traceback: the workers now ignore it from birth
    out = tmp_path / "corpus"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "xlsr.cli.main", "synth", "--out", str(out), "--langs", "it", "--utts-per-lang",
           "400", "--words-per-utt", "1-2", "--clean", "--workers", "2"]
    # a suite started in the background (`make test &`, a CI runner) has SIGINT ignored, and a child would inherit
    # that: Ctrl-C as in a terminal needs it back at its default
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while proc.poll() is None and len(list(out.glob("it/audio/*.flac"))) < files:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole process group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    lines = [line for line in err.decode().replace("\r", "\n").splitlines() if line and not line.startswith("synth:")]
    assert (proc.returncode, lines) == (130, ["xlsr: interrupted"])
