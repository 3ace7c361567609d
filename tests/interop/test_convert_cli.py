"""`xlsr convert`: HF → xlsr → HF through the CLI, and a one-line error for a bad source."""

from __future__ import annotations

import pytest
import torch
from hf_fixtures import make_hf
from safetensors.torch import load_file

from xlsr.cli.main import main


def test_convert_hf_to_xlsr_and_back(tmp_path, capsys):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=20)
    hf.save_pretrained(tmp_path / "hf")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "ours"), "--to", "xlsr"]) == 0
    assert "(hf, Wav2Vec2ForPreTraining)" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"]) == 0
    before = load_file(tmp_path / "hf" / "model.safetensors")
    after = load_file(tmp_path / "back" / "model.safetensors")
    assert sorted(before) == sorted(after) and all(torch.equal(before[k], after[k]) for k in before)


def test_converting_into_the_source_or_around_it_is_refused_and_the_source_kept(tmp_path, capsys):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=21)
    hf.save_pretrained(tmp_path / "run" / "hf")
    files = {p.name: p.read_bytes() for p in (tmp_path / "run" / "hf").iterdir()}
    for dst, words in (("run/hf", "DST's checkpoint files are replaced, so converting there could lose the source"),
                       ("run/hf/sub", "lies inside the source"),
                       ("run", "DST's checkpoint files are replaced, so converting there could lose the source")):
        assert main(["convert", str(tmp_path / "run" / "hf"), str(tmp_path / dst), "--to", "xlsr"]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "run" / "hf").iterdir()} == files


def test_a_fairseq_dictionary_for_another_format_is_refused(tmp_path, capsys):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=23)
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "dict.ltr.txt").write_text("a 10\n")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "out"), "--to", "xlsr", "--dict",
                 str(tmp_path / "dict.ltr.txt")]) == 2
    err = capsys.readouterr().err
    assert "a fairseq dictionary is read for a fairseq .pt only" in err and "is a hf checkpoint" in err
    assert not (tmp_path / "out").exists()


def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys):
    hf = make_hf("Wav2Vec2ForPreTraining", "xlsr_like", seed=22)
    hf.save_pretrained(tmp_path / "hf")
    (tmp_path / "a_file").write_text("")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "a_file" / "out"), "--to", "xlsr"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlsr: error: ") and "a_file: a file is in the way where a folder is needed" in err and err.count("\n") == 1


def test_convert_bad_source_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_text("not a checkpoint")
    assert main(["convert", str(bad), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xlsr: error: ") and "model.pt: not a checkpoint" in err and "\n" not in err
    assert not (tmp_path / "out").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("ran",))


def _truncated(path):
    torch.save({"model": {"w": torch.randn(64, 64)}, "cfg": {"model": {}}}, path)
    path.write_bytes(path.read_bytes()[:-300])
    return "truncated or damaged: its zip archive has no end record"


def _outside_allow_list(path):
    torch.save({"model": {"w": torch.zeros(2)}, "cfg": {"model": {}}, "extra": _Payload()}, path)
    return "refused to load __builtin__.print"


@pytest.mark.parametrize("make_bad", [_truncated, _outside_allow_list])
def test_convert_bad_pt_is_one_line_and_writes_nothing(make_bad, tmp_path, capsys):
    src = tmp_path / "bad.pt"
    expected = make_bad(src)
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "hf"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xlsr: error: {src}: ") and expected in err and "\n" not in err
    assert not (tmp_path / "out").exists() and "ran" not in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pt"]  # no temporary folder left either


def test_a_dictionary_for_a_fairseq_file_without_a_ctc_head_is_refused(tmp_path, capsys):
    from xlsr.interop.fairseq_export import export_fairseq
    from xlsr.interop.native import build_model
    from xlsr.model import Wav2Vec2Config

    cfg = Wav2Vec2Config(conv_layers=[(32, 10, 5), (32, 3, 2), (32, 2, 2)], hidden_size=64, num_layers=1, num_heads=4,
                         ffn_dim=128, conv_pos=16, conv_pos_groups=4, final_dim=32, codevector_dim=32,
                         num_codevectors_per_group=8)
    export_fairseq(build_model("Wav2Vec2ForPreTraining", cfg), tmp_path / "pt")
    src, dictionary = tmp_path / "pt" / "checkpoint.pt", tmp_path / "dict.ltr.txt"
    dictionary.write_text("a 10\nb 5\n")
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "xlsr", "--dict", str(dictionary)]) == 2
    err = capsys.readouterr().err
    assert err == (f"xlsr: error: {src}: has no CTC head (w2v_encoder.proj); dictionary='{dictionary}' (--dict) "
                   f"does not apply\n")
    assert not (tmp_path / "out").exists()
    assert main(["convert", str(src), str(tmp_path / "out"), "--to", "xlsr"]) == 0  # without --dict it converts
