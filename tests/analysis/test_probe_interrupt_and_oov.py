"""`xlsr probe` as a user meets it: Ctrl-C after some models prints their table and says what probe.json holds;
test labels with symbols train never has (a language train lacks) are said, not only counted in probe.json."""

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from xlsr.analysis.probe import ProbeSettings, probe
from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def micro_config(num_layers: int = 2) -> Wav2Vec2Config:
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    return Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=num_layers, num_heads=2, ffn_dim=64,
                          final_dim=16, codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8,
                          conv_pos=16, conv_pos_groups=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    train = write_tone_corpus(root / "data", "train", 6, seed=1)
    test = write_tone_corpus(root / "data", "test", 3, seed=2)
    torch.manual_seed(0)
    for name in ("first", "second"):
        save_checkpoint(root / name, Wav2Vec2ForPreTraining(micro_config()))
    return root, train, test


def test_ctrl_c_after_a_model_prints_its_table_and_what_probe_json_holds(setup, tmp_path, monkeypatch, capsys):
    import xlsr.analysis.probe as probe_module

    root, train, test = setup
    original, calls = probe_module.probe_model, []

    def probe_model(*args, **kwargs):  # Ctrl-C while the second model is probed
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(probe_module, "probe_model", probe_model)
    out = tmp_path / "out"
    code = main(["probe", "--model", str(root / "first"), "--model", str(root / "second"), "--train", str(train),
                 "--test", str(test), "--out", str(out), "--layers", "cnn,1", "--epochs", "1", "--no-plot"])
    stdout, stderr = capsys.readouterr()
    assert code == 130
    written = json.loads((out / "probe.json").read_text())
    assert [m["name"] for m in written["models"]] == ["first"]
    per = {r["layer"]: r["per"] for r in written["models"][0]["layers"]}
    assert stdout.splitlines()[:3] == [f"{'layer':<6}{'first':>12}", f"{'cnn':<6}{100 * per['cnn']:>11.1f}%",
                                       f"{'1':<6}{100 * per[1]:>11.1f}%"]
    assert stderr.strip().splitlines()[-1] == (f"xlsr: interrupted: {out / 'probe.json'} holds the 1 of 2 models "
                                               f"finished (first); the same command probes them all again")


def test_ctrl_c_before_any_model_is_finished_says_only_that(setup, tmp_path, monkeypatch, capsys):
    import xlsr.analysis.probe as probe_module

    def probe_model(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe_module, "probe_model", probe_model)
    root, train, test = setup
    code = main(["probe", "--model", str(root / "first"), "--train", str(train), "--test", str(test),
                 "--out", str(tmp_path / "out"), "--layers", "cnn", "--epochs", "1"])
    stdout, stderr = capsys.readouterr()
    assert (code, stdout, stderr.strip().splitlines()[-1]) == (130, "", "xlsr: interrupted")
    assert not (tmp_path / "out" / "probe.json").exists()


def test_test_symbols_that_train_never_has_are_said(setup, tmp_path, caplog):
    root, train, test = setup
    # the test set in another "language": its tone u is spelt o, which no train label holds
    lines = [json.loads(line) for line in test.read_text().splitlines()]
    respelt = test.parent / "test_o.jsonl"
    respelt.write_text("".join(json.dumps({**r, "phones": r["phones"].replace("u", "o")}) + "\n" for r in lines))
    n = sum(r["phones"].split().count("u") for r in lines)
    assert n > 0
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe"):
        report = probe(root / "first", train, respelt, tmp_path / "out", layers="cnn", plot=False,
                       settings=ProbeSettings(epochs=1), show_progress=False)
    assert report.summary["test_oov_symbols"] == n
    said = [r.getMessage() for r in caplog.records if "never has" in r.getMessage()]
    assert said == [f"{respelt}: its labels hold {n} symbol(s) that the train manifest {train} never has ('o'×{n}): "
                    f"no head can output them, so each counts as an error"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe"):
        report = probe(root / "first", train, test, tmp_path / "out", layers="cnn", plot=False,
                       settings=ProbeSettings(epochs=1), show_progress=False)
    assert report.summary["test_oov_symbols"] == 0
    assert not [r for r in caplog.records if "never has" in r.getMessage()]
