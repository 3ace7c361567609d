"""`xlsr analyze` and `xlsr probe` write into --out only over their own earlier outputs, never over a user's file."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from matplotlib.figure import Figure

import xlsr.analysis.run as run_module
from xlsr.analysis import analyze, plots
from xlsr.analysis.codebook import CodewordCounts
from xlsr.analysis.output_folder import check_output_folder, png_mark
from xlsr.analysis.run import OUTPUTS, _save_counts
from xlsr.cli.main import main
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

SR = 16000


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1])
    return fig


def _refused(capsys, argv, path, text):
    """Run the CLI and check it fails in one line naming --out and `path`, which keeps `text`."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--out" in err and f"{path.name} exists and is not an output of" in err and "left as it is" in err, err
    assert path.read_text() == text


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_setup(tmp_path_factory.mktemp("tiny"))


@pytest.mark.parametrize("name", ["analysis.json", "pca.png", "codeword_counts.npz"])
def test_analyze_refuses_a_users_file_and_keeps_it(tiny, tmp_path, capsys, name):
    model, data = tiny
    out = tmp_path / "out"
    out.mkdir()
    mine = out / name
    mine.write_text('{"my": "notes"}')
    _refused(capsys, ["analyze", "--model", str(model), "--data", str(data), "--out", str(out),
                      "--seconds-per-lang", "0.5"], mine, '{"my": "notes"}')
    assert [p.name for p in out.iterdir()] == [name]  # refused before anything was written


def test_the_folder_is_judged_before_the_model_or_data_are_read(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pca.png").write_text("mine")
    _refused(capsys, ["analyze", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path / "no-data"),
                      "--out", str(out)], out / "pca.png", "mine")


def test_the_data_folder_is_no_output_folder(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "it").mkdir(parents=True)
    before = sorted(p.name for p in data.iterdir())
    assert main(["analyze", "--model", str(tmp_path / "no-model"), "--data", str(data), "--out", str(data / ".")]) == 2
    assert capsys.readouterr().err == (f"xlsr: error: --out {data}: is the --data folder; give the analysis a folder "
                                       f"of its own\n")
    assert sorted(p.name for p in data.iterdir()) == before


def test_probe_refuses_a_users_report_before_loading_the_model(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "probe.json"
    mine.write_text('{"my": "results"}')
    _refused(capsys, ["probe", "--model", str(tmp_path / "no-model"), "--train", str(tmp_path / "t.jsonl"),
                      "--test", str(tmp_path / "t.jsonl"), "--out", str(out)], mine, '{"my": "results"}')


def test_earlier_outputs_are_told_by_their_content(tmp_path):

    out = tmp_path / "out"
    out.mkdir()
    # figures drawn by analyze carry its mark; the counts are an archive of its arrays
    plots.save_png(_figure(), out / "pca.png", "xlsr analyze")
    assert png_mark(out / "pca.png") == "xlsr analyze"
    counts = CodewordCounts(["a", "b"], np.array([3]), np.array([[1], [2]]), 4)
    _save_counts(counts, out / "codeword_counts.npz")
    check_output_folder(out, OUTPUTS, with_figures=True)

    # a figure without the mark (drawn before it existed) is ours when the folder's report lists it
    fig = _figure()
    fig.savefig(out / "sharing.png", format="png")
    with pytest.raises(XlsrError, match=r"sharing.png exists and is not an output of xlsr analyze"):
        check_output_folder(out, OUTPUTS, with_figures=True)
    check_output_folder(out, OUTPUTS, with_figures=False)  # --no-plots writes no figure over it
    report = {"langs": ["a", "b"], "per_language": {}, "similarity": {}, "files": {"sharing": "sharing.png"}}
    (out / "analysis.json").write_text(json.dumps(report))
    check_output_folder(out, OUTPUTS, with_figures=True)

    # a probe's figure is not an analysis figure; a zip without the arrays is not the counts; a folder is no file
    plots.save_png(_figure(), out / "dendrogram.png", "xlsr probe")
    with pytest.raises(XlsrError, match=r"dendrogram.png exists .* no figure that xlsr analyze drew"):
        check_output_folder(out, OUTPUTS, with_figures=True)
    (out / "dendrogram.png").unlink()
    np.savez(out / "other.npz", langs=np.array(["a"]))
    (out / "other.npz").replace(out / "codeword_counts.npz")
    with pytest.raises(XlsrError, match=r"codeword_counts.npz exists .* arrays langs, codewords, counts"):
        check_output_folder(out, OUTPUTS, with_figures=True)
    (out / "codeword_counts.npz").unlink()
    (out / "similarity.png").mkdir()
    with pytest.raises(XlsrError, match=r"similarity.png exists .* not a regular file"):
        check_output_folder(out, OUTPUTS, with_figures=True)


def _tiny_setup(root):
    cfg = Wav2Vec2Config(conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, hidden_size=32,
                         num_layers=1, num_heads=2, ffn_dim=64, final_dim=16, codevector_dim=16,
                         num_codevector_groups=2, num_codevectors_per_group=8, conv_pos=16, conv_pos_groups=4)
    torch.manual_seed(0)
    save_checkpoint(root / "model", Wav2Vec2ForPreTraining(cfg))
    rng = np.random.default_rng(0)
    for k, lang in enumerate(["aa", "bb"]):
        folder = root / "data" / lang
        folder.mkdir(parents=True)
        path = folder / "0.wav"
        sf.write(path, (0.1 * (k + 1) * rng.standard_normal(SR)).astype(np.float32), SR)
        write_manifest(folder / "train.jsonl", [Utterance(audio=str(path), num_samples=SR, lang=lang, id=lang)])
    return root / "model", root / "data"


def test_a_rerun_replaces_the_outputs_of_a_run_cut_short_before_its_report(tmp_path, monkeypatch):
    model, data = _tiny_setup(tmp_path)
    out = tmp_path / "out"

    class Interrupted(Exception):
        pass

    def no_report(path, summary):
        raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(run_module, "write_json", no_report)
        with pytest.raises(Interrupted):
            analyze(model, data, out, seconds_per_lang=0.5, show_progress=False)
    assert not (out / "analysis.json").exists() and (out / "pca.png").exists()
    # the figures and counts it left are known by their content alone
    report = analyze(model, data, out, seconds_per_lang=0.5, show_progress=False)
    assert json.loads((out / "analysis.json").read_text())["langs"] == report.summary["langs"] == ["aa", "bb"]


# A figure the report lists is taken for the run's own without its mark only when that report was written before
# figures were marked: the user's own picture saved over pca.png beside a current report is refused.

def _unmarked(path):
    fig = Figure(figsize=(2, 2))
    fig.add_subplot().plot([1, 0])
    fig.savefig(path, format="png")
    assert png_mark(path) is None


def test_a_users_figure_saved_over_an_analysis_figure_is_refused_and_kept(tmp_path):
    model, data = _tiny_setup(tmp_path)
    out = tmp_path / "out"
    analyze(model, data, out, seconds_per_lang=0.5, show_progress=False)
    assert json.loads((out / "analysis.json").read_text())["files"]["pca"] == "pca.png"
    _unmarked(out / "pca.png")
    mine = (out / "pca.png").read_bytes()
    with pytest.raises(XlsrError, match=r"pca.png exists and is not an output of xlsr analyze \(it is no figure"):
        analyze(model, data, out, seconds_per_lang=0.5, show_progress=False)
    assert (out / "pca.png").read_bytes() == mine


def test_an_unmarked_figure_an_earlier_versions_report_lists_is_still_its_own(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _unmarked(out / "pca.png")
    report = {"langs": ["a", "b"], "per_language": {}, "similarity": {}, "files": {"pca": "pca.png"}}
    (out / "analysis.json").write_text(json.dumps(report))
    check_output_folder(out, OUTPUTS, with_figures=True)


def test_a_users_figure_saved_over_the_probes_figure_is_refused(tmp_path):
    from xlsr.analysis import probe as probe_module

    out = tmp_path / "out"
    report = {"labels": "phones", "metric": "per", "train": "t.jsonl", "test": "t.jsonl"}
    probe_module._write(dict(report), out, plot=False)  # as the probe writes its report
    written = json.loads((out / "probe.json").read_text())
    assert written["png_mark"] == "xlsr probe"
    written["files"]["plot"] = "probe.png"  # a report of a run with its figure
    (out / "probe.json").write_text(json.dumps(written))
    _unmarked(out / "probe.png")  # the user's picture in its place
    with pytest.raises(XlsrError, match=r"probe.png exists and is not an output of xlsr probe"):
        check_output_folder(out, probe_module.OUTPUTS, with_figures=True)
    del written["png_mark"]  # a report of a version before the mark: its figure was unmarked
    (out / "probe.json").write_text(json.dumps(written))
    check_output_folder(out, probe_module.OUTPUTS, with_figures=True)
