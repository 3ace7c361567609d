"""`xlsr probe` with two models, Ctrl-C after the second is probed, while its figure is drawn or probe.json written:
the table printed and the count said are those of the models probe.json holds, whichever write was complete."""

import json
import sys
from pathlib import Path

import pytest
import torch

import xlsr.analysis.probe as probe_module
from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2ForPreTraining

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402
from test_probe_interrupt_and_oov import micro_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    train = write_tone_corpus(root / "data", "train", 4, seed=1)
    test = write_tone_corpus(root / "data", "test", 2, seed=2)
    torch.manual_seed(0)
    for name in ("first", "second"):
        save_checkpoint(root / name, Wav2Vec2ForPreTraining(micro_config(num_layers=1)))
    return root, train, test


def on_second_call(real, *, after: bool):
    """`real`, with Ctrl-C at its second call: before it runs, or after it has run (its work done)."""
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2 and not after:
            raise KeyboardInterrupt
        out = real(*args, **kwargs)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return out

    return interrupted


def run_probe(setup, out: Path, capsys, *extra: str) -> tuple[int, str, str]:
    root, train, test = setup
    code = main(["probe", "--model", str(root / "first"), "--model", str(root / "second"), "--train", str(train),
                 "--test", str(test), "--out", str(out), "--layers", "cnn", "--epochs", "1", *extra])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr.strip().splitlines()[-1]


def table_head(written: dict) -> list[str]:
    """The first two lines format_summary prints for `written` (the header, the CNN row)."""
    models = written["models"]
    return [f"{'layer':<6}" + "".join(f"{m['name']:>12}" for m in models),
            f"{'cnn':<6}" + "".join(f"{100 * m['layers'][0]['per']:>11.1f}%" for m in models)]


@pytest.mark.parametrize("where", ["plot", "write before", "summary"])
def test_ctrl_c_before_the_second_write_is_complete_shows_the_first_model(setup, tmp_path, monkeypatch, capsys,
                                                                          where):
    if where == "plot":  # while the second model's figure is drawn
        monkeypatch.setattr(probe_module, "plot_probe", on_second_call(probe_module.plot_probe, after=False))
    elif where == "write before":  # the figure drawn, probe.json not yet renamed in
        monkeypatch.setattr(probe_module, "write_json", on_second_call(probe_module.write_json, after=False))
    else:
        monkeypatch.setattr(probe_module, "_summary", on_second_call(probe_module._summary, after=False))
    out = tmp_path / "out"
    code, stdout, said = run_probe(setup, out, capsys, *([] if where == "plot" else ["--no-plot"]))
    written = json.loads((out / "probe.json").read_text())
    assert code == 130 and [m["name"] for m in written["models"]] == ["first"]
    assert stdout.splitlines()[:2] == table_head(written)
    assert said == (f"xlsr: interrupted: {out / 'probe.json'} holds the 1 of 2 models finished (first); "
                    f"the same command probes them all again")


def test_ctrl_c_once_the_second_write_is_complete_shows_both_models(setup, tmp_path, monkeypatch, capsys):
    # probe.json renamed in, Ctrl-C before write_json returned: it holds both models, and so does what is said
    monkeypatch.setattr(probe_module, "write_json", on_second_call(probe_module.write_json, after=True))
    out = tmp_path / "out"
    code, stdout, said = run_probe(setup, out, capsys, "--no-plot")
    written = json.loads((out / "probe.json").read_text())
    assert code == 130 and [m["name"] for m in written["models"]] == ["first", "second"]
    assert stdout.splitlines()[:2] == table_head(written)
    assert said == f"xlsr: interrupted: {out / 'probe.json'} holds the 2 of 2 models finished (first, second)"
