"""A rerun without figures (`probe --no-plot`, `analyze --no-plots`) into the same --out removes the figures the
earlier run drew, so that the folder shows none its new report does not match; a user's file of the same name stays.
The figure goes before the new report is written: a crash in between leaves the earlier report without its figure,
never the new report beside an earlier figure. A checkpoint given twice to the probe (however its path is spelled)
is refused in one line before anything is read."""

import json
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

import xlsr.analysis.probe as probe_module
import xlsr.analysis.run as run_module
from xlsr.analysis import analyze
from xlsr.analysis.output_folder import png_mark
from xlsr.analysis.probe import ProbeSettings, probe
from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tones import write_tone_corpus  # noqa: E402
from test_output_folder import _tiny_setup  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ProbeSettings(epochs=1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    train = write_tone_corpus(root / "data", "train", 4, seed=1)
    test = write_tone_corpus(root / "data", "test", 2, seed=2)
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    cfg = Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=1, num_heads=2, ffn_dim=64, final_dim=16,
                         codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16,
                         conv_pos_groups=4)
    torch.manual_seed(0)
    save_checkpoint(root / "model", Wav2Vec2ForPreTraining(cfg))
    return root / "model", train, test


def _run(setup, out, plot):
    model, train, test = setup
    return probe(model, train, test, out, layers="cnn", settings=FAST, plot=plot, show_progress=False)


def test_a_probe_rerun_without_its_figure_removes_the_earlier_one(setup, tmp_path):
    out = tmp_path / "out"
    _run(setup, out, plot=True)
    assert png_mark(out / "probe.png") == "xlsr probe"
    report = _run(setup, out, plot=False)
    assert sorted(p.name for p in out.iterdir()) == ["probe.json"]
    assert json.loads((out / "probe.json").read_text())["files"] == {"json": "probe.json"} == report.summary["files"]


def test_a_users_picture_named_like_the_probes_figure_stays(setup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1])
    fig.savefig(out / "probe.png", format="png")  # no mark: the user's
    mine = (out / "probe.png").read_bytes()
    _run(setup, out, plot=False)
    assert (out / "probe.png").read_bytes() == mine


def test_a_crash_before_the_new_report_leaves_no_earlier_figure_beside_it(setup, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _run(setup, out, plot=True)
    earlier = (out / "probe.json").read_text()

    class Crash(Exception):
        pass

    def crash(path, summary):
        raise Crash

    monkeypatch.setattr(probe_module, "write_json", crash)
    with pytest.raises(Crash):
        _run(setup, out, plot=False)
    # the earlier report, untouched, names a figure that is gone: no figure of other results beside a report
    assert (out / "probe.json").read_text() == earlier and not (out / "probe.png").exists()


def test_an_analysis_rerun_without_figures_removes_the_earlier_ones(tmp_path):
    model, data = _tiny_setup(tmp_path)
    out = tmp_path / "out"
    analyze(model, data, out, seconds_per_lang=0.5, show_progress=False)
    assert png_mark(out / "pca.png") == "xlsr analyze"
    analyze(model, data, out, seconds_per_lang=0.5, plots=False, show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "codeword_counts.npz"]
    assert set(json.loads((out / "analysis.json").read_text())["files"]) == {"counts", "json"}


def test_an_earlier_versions_unmarked_figure_its_report_lists_is_removed_too(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1])
    fig.savefig(out / "sharing.png", format="png")  # unmarked, but the earlier (unmarked-era) report lists it
    fig.savefig(out / "pca.png", format="png")  # unmarked and not listed: the user's
    report = {"langs": ["a", "b"], "per_language": {}, "similarity": {}, "files": {"sharing": "sharing.png"}}
    (out / "analysis.json").write_text(json.dumps(report))
    assert run_module.remove_own_figures(out, run_module.OUTPUTS) == ["sharing.png"]
    assert sorted(p.name for p in out.iterdir()) == ["analysis.json", "pca.png"]


def test_a_checkpoint_given_twice_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    common = ["--train", "t.jsonl", "--test", "t.jsonl", "--out", "out"]
    assert main(["probe", "--model", "runs/a", "--model", str(tmp_path / "runs" / "a") + "/", *common]) == 2
    assert capsys.readouterr().err == (f"xlsr: error: --model {tmp_path / 'runs' / 'a'}/: given twice (as runs/a and "
                                       f"{tmp_path / 'runs' / 'a'}/); give each checkpoint once\n")
    assert main(["probe", "--model", "x", "--model", "x", *common]) == 2
    assert capsys.readouterr().err == "xlsr: error: --model x: given twice; give each checkpoint once\n"
    assert not (tmp_path / "out").exists()
