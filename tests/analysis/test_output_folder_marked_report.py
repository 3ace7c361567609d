"""A figure the report of `xlsr analyze` lists is taken for the run's own without its mark only when that report was
written before figures were marked: the user's own picture saved over pca.png beside a current report is refused."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from matplotlib.figure import Figure

from xlsr.analysis import analyze
from xlsr.analysis.output_folder import check_output_folder, png_mark
from xlsr.analysis.run import OUTPUTS
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

SR = 16000


def _tiny_setup(root):
    """A tiny pretraining checkpoint and two languages of one second each."""
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
