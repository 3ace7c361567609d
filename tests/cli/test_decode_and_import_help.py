"""`--help` of transcribe, evaluate, stream and `data import *` says every option's default (the value a run
with it uses); `xlsr stream` takes transcribe's name for the window context, --chunk-stride, as well as its own."""

import re

import numpy as np
import pytest
import soundfile as sf

from xlsr.cli.main import build_parser, main


def _option_helps(argv: list[str], capsys) -> dict[str, str]:
    """{each option string: its entry in `xlsr ARGV --help`, on one line}."""
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    out = capsys.readouterr().out
    helps = {}
    for block in re.split(r"\n(?=  -)", out)[1:]:  # each option's entry starts on a line indented by two
        text = " ".join(block.split())
        for name in re.findall(r"(?:^|, )(--[a-z][a-z-]*)", text):
            helps[name] = text
    return helps


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@pytest.mark.parametrize("argv, required, options", [
    (["transcribe"], ["a.wav", "--model", "m", "--out", "o.jsonl"],
     ["--chunk-seconds", "--chunk-stride", "--batch-seconds", "--device"]),
    (["evaluate"], ["--model", "m", "--manifest", "m.jsonl"],
     ["--chunk-seconds", "--chunk-stride", "--batch-seconds", "--device"]),
    (["stream"], ["a.wav", "--model", "m"], ["--chunk-seconds", "--stride-seconds", "--piece-seconds", "--device"]),
    (["data", "import", "commonvoice"], ["cv", "--out", "o"], ["--max-bad-share"]),
    (["data", "import", "fairseq"], ["a.tsv", "--lang", "en", "--out", "o"], ["--max-bad-share"]),
    (["data", "import", "folder"], ["src", "--transcripts", "t.txt", "--lang", "en", "--out", "o"],
     ["--split", "--label", "--max-bad-share"]),
    (["data", "import", "lhotse"], ["--src", "c.jsonl", "--out", "o"], ["--split", "--max-bad-share"]),
    (["data", "import", "hf"], ["--src", "d", "--out", "o"],
     ["--split", "--audio-column", "--text-column", "--lang-column", "--max-bad-share"]),
])
def test_help_shows_the_default_a_run_uses(argv, required, options, capsys):
    helps = _option_helps(argv, capsys)
    args = build_parser(argv).parse_args([*argv, *required])
    for option in options:
        value = getattr(args, option[2:].replace("-", "_"))
        assert f"(default {_shown(value)}" in helps[option], (option, helps[option])


@pytest.mark.parametrize("kind", ["commonvoice", "fairseq", "folder", "lhotse", "hf"])
def test_data_import_options_all_say_what_they_are(kind, capsys):
    helps = _option_helps(["data", "import", kind], capsys)
    for option in ("--out", "--lang", "--split"):
        if option in helps:
            head = re.match(rf"{option} [A-Z_]+", helps[option]).group(0)
            assert len(helps[option]) > len(head) + 10, helps[option]  # more than the bare option and metavar
    assert "--out" in helps and "--lang" in helps


def test_stream_takes_chunk_stride_as_transcribe_names_it(monkeypatch, tmp_path, capsys):
    import xlsr.decode.streaming
    import xlsr.decode.transcribe

    given = {}

    class Stop(Exception):
        pass

    def stream(ctc, *, chunk_s, stride_s):
        given.update(chunk_s=chunk_s, stride_s=stride_s)
        raise Stop

    monkeypatch.setattr(xlsr.decode.transcribe, "load_ctc_model", lambda path, **kw: "ctc")
    monkeypatch.setattr(xlsr.decode.streaming, "StreamingTranscriber", stream)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000)
    for option in ("--chunk-stride", "--stride-seconds"):  # the new name, and the old one still
        given.clear()
        with pytest.raises(Stop):
            main(["stream", str(wav), "--model", "m", "--chunk-seconds", "6", option, "1.5"])
        assert given == {"chunk_s": 6.0, "stride_s": 1.5}, option
    assert main(["stream", str(wav), "--model", "m", "--chunk-stride", "-1"]) == 2
    assert "--stride-seconds >= 0" in capsys.readouterr().err
    assert "--chunk-stride" in _option_helps(["stream"], capsys)["--stride-seconds"]  # one option, two names
