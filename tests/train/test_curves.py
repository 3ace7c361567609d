"""`xlsr plot RUN`: which panels a log gets, and the feature-health reference line (titles and lines, not pixels)."""

import json
import re

import matplotlib.pyplot as plt
import pytest

from xlsr.cli.main import main
from xlsr.errors import XlsrError
from xlsr.train.curves import draw_training_curves, plot_training_curves
from xlsr.train.monitor import read_log


def _write_log(run, with_health: bool):
    records = []
    for u in range(0, 30, 10):
        records.append({"update": u + 10, "split": "train", "loss": 4.0 - 0.1 * u, "lr": 1e-3, "grad_norm": 1.0})
        valid = {"update": u, "split": "valid", "loss": 4.2 - 0.1 * u, "code_perplexity": 20.0}
        if with_health:
            valid.update(feature_eff_dim=48.6 - 1.5 * u, context_eff_dim=30.0, feature_scale_spread=2.0 + u,
                         feature_eff_dim_init=48.6, context_eff_dim_init=30.0, probe_feature_per=0.9 - 0.01 * u)
        records += [valid, {**valid, "split": "valid_aa"}]
    records.append({"update": 20, "warning": "valid_feature_collapse", "message": "..."})
    run.mkdir()
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_feature_health_panels_with_the_value_at_initialisation(tmp_path):
    run = tmp_path / "run"
    _write_log(run, with_health=True)
    fig = draw_training_curves([r for r in read_log(run / "log.jsonl") if "split" in r], "run")
    titles = _titles(fig)
    assert titles == ["loss (bits per masked frame)", "code perplexity", "learning rate", "gradient norm",
                      "effective dimension (dashed: at initialisation)",
                      "CNN channel-scale spread (max / median std)", "linear probe error rate"]
    dims = fig.axes[titles.index("effective dimension (dashed: at initialisation)")]
    dashed = {line.get_label(): line.get_ydata()[0] for line in dims.get_lines() if line.get_linestyle() == "--"}
    assert dashed == {"feature_eff_dim at initialisation": 48.6, "context_eff_dim at initialisation": 30.0}
    plt.close(fig)
    assert main(["plot", str(run)]) == 0 and (run / "curves.png").stat().st_size > 10_000


def test_a_log_without_feature_health_gets_no_such_panels(tmp_path):
    run = tmp_path / "run"
    _write_log(run, with_health=False)
    fig = draw_training_curves([r for r in read_log(run / "log.jsonl") if "split" in r], "run")
    assert len(_titles(fig)) == 4 and not any("dimension" in t or "probe" in t for t in _titles(fig))
    plt.close(fig)
    with pytest.raises(XlsrError, match="no training log"):
        plot_training_curves(tmp_path / "nothing")


def test_bad_outputs_and_a_binary_log_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    _write_log(run, with_health=False)
    (tmp_path / "folder").mkdir()
    for out, words in ((tmp_path / "folder", "folder: is a folder; give an image file name"),
                       (tmp_path / "curves.txt", "curves.txt: not an image file name; end it in .png")):
        assert main(["plot", str(run), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    (run / "log.jsonl").write_bytes(b'{"update": 1}\n\xff\xfe\x00binary\n')
    with pytest.raises(XlsrError, match=r"log.jsonl:2: not UTF-8 text"):
        plot_training_curves(run)


def test_a_finetuning_log_gets_its_error_rate_and_a_ctc_loss_title(tmp_path):
    records = []
    for u in range(1, 6):
        records.append({"split": "train", "update": u, "loss": 3.0 / u, "lr": 1e-4, "blank_share": 0.5})
        for split in ("valid", "valid_aa"):
            records.append({"split": split, "update": u, "loss": 3.2 / u, "per": 0.9 - 0.1 * u, "sample_size": 100})
    fig = draw_training_curves(records, "ft")
    titles = _titles(fig)
    assert titles == ["CTC loss (nats per label)", "validation error rate", "learning rate"]
    panel = fig.axes[titles.index("validation error rate")]
    assert [line.get_label() for line in panel.get_lines()] == ["valid per", "valid, per language per"]
    assert list(panel.get_lines()[0].get_ydata()) == pytest.approx([0.8, 0.7, 0.6, 0.5, 0.4])
    plt.close(fig)
    pretraining = [{"split": "train", "update": 1, "loss": 6.5, "contrastive_loss": 6.4, "accuracy": 0.1}]
    assert _titles(draw_training_curves(pretraining, "pt"))[0] == "loss (bits per masked frame)"


def test_a_log_without_a_value_to_plot_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"split": "train", "update": 1, "wps": 3}\n')
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{run / 'log.jsonl'}: none of its 1 logged updates holds a value to plot" in err
    assert not (run / "curves.png").exists()


def test_skipped_audio_gets_a_panel_only_once_a_file_was_skipped(tmp_path):
    records = [{"update": u, "split": "train", "loss": 3.0, "bad_files": 0, "epoch_bad_files": 0} for u in (1, 2)]
    fig = draw_training_curves(records, "run")
    assert "audio files skipped (run total)" not in _titles(fig)
    plt.close(fig)
    records.append({"update": 3, "split": "train", "loss": 2.9, "bad_files": 2, "epoch_bad_files": 2})
    fig = draw_training_curves(records, "run")
    panel = fig.axes[_titles(fig).index("audio files skipped (run total)")]
    assert [list(line.get_ydata()) for line in panel.get_lines()] == [[0, 0, 2]]
    plt.close(fig)


@pytest.mark.parametrize("text, words", [
    ("garbage\nmore garbage\n", "none of its 2 lines is a JSON record (is this a run's log.jsonl?)"),
    ('{"split": "train", "upd', "no logged updates yet"),  # a run killed while writing its first line
    ("[1, 2]\n", "no logged updates yet"),  # JSON, but no record of an update: read, and said so
])
def test_a_log_that_is_no_runs_is_told_from_one_with_no_update_yet(tmp_path, text, words):
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.jsonl").write_text(text)
    with pytest.raises(XlsrError, match=f"^{re.escape(str(run / 'log.jsonl'))}: {re.escape(words)}$"):
        plot_training_curves(run)
