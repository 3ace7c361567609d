"""What `xlsr finetune` says as it ends: the update of checkpoints/best and the dev error rate logged there (pooled and
per language), or that no validation has run yet; and a hint to --new-head that the command line takes."""

import json

import pytest
import torch

from xlsr.cli.main import main
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, best_dev_summary
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 8, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def _fake_run(root, update: int, records: list[dict]):
    """A run folder whose checkpoints/best is update `update`, with these log records."""
    best = root / "checkpoints" / f"update_{update:07d}"
    best.mkdir(parents=True)
    torch.save({"update": update, "best": 0.0}, best / "trainer.pt")
    (root / "checkpoints" / "best").symlink_to(best.name)
    (root / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


def test_the_summary_reads_the_best_update_from_the_log(tmp_path):
    records = [{"update": 10, "split": "valid_es", "per": 0.5}, {"update": 10, "split": "valid_it", "per": 0.7},
               {"update": 10, "split": "valid", "per": 0.6, "sample_size": 20.0},
               {"update": 20, "split": "valid_es", "per": 0.9}, {"update": 20, "split": "valid", "per": 0.9},
               {"update": 20, "split": "train", "loss": 1.0, "per": 0.1}]
    run = _fake_run(tmp_path / "run", 10, records)
    assert best_dev_summary(run, "phones") == "checkpoints/best: update 10, dev PER 60.00% (es 50.00%, it 70.00%)"
    one = _fake_run(tmp_path / "one", 20, records)
    assert best_dev_summary(one, "phones") == "checkpoints/best: update 20, dev PER 90.00%"  # one language: no split
    assert best_dev_summary(tmp_path / "empty", "chars") == ""  # no best checkpoint (stopped before a validation)
    # update 10 validated again by a re-run (after a crash) on Spanish alone: that validation is the one shown
    again = _fake_run(tmp_path / "again", 10, [*records, {"update": 10, "split": "valid_es", "per": 0.4},
                                               {"update": 10, "split": "valid", "per": 0.4}])
    assert best_dev_summary(again, "phones") == "checkpoints/best: update 10, dev PER 40.00%"


def test_the_finetune_command_prints_the_best_dev_rate_it_logged(tmp_path, capsys):
    aa_train = write_tone_corpus(tmp_path, "train", 4, seed=1, lang="aa")
    aa_dev = write_tone_corpus(tmp_path, "dev", 2, seed=2, lang="aa")
    bb_train = write_tone_corpus(tmp_path, "train", 4, seed=3, lang="bb")
    bb_dev = write_tone_corpus(tmp_path, "dev", 2, seed=4, lang="bb")
    settings = tmp_path / "run.yaml"
    settings.write_text(json.dumps({"model": SMALL}))  # JSON is YAML
    run = tmp_path / "run"
    argv = ["finetune", "--config", str(settings), "--train", str(aa_train), str(bb_train), "--dev", str(aa_dev),
            str(bb_dev), "--out", str(run), "--max-updates", "4", "--valid-every", "2", "--save-every", "2",
            "--blank-bias", "0", "--lr", "1e-6", "--progress", "false", "--tensorboard", "false"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    log = read_log(run / "log.jsonl")
    pooled = [r for r in log if r.get("split") == "valid"]
    best = min(pooled, key=lambda r: r["per"])  # the first of the lowest, as the Trainer keeps it
    per_lang = {r["split"][6:]: r["per"] for r in log if r.get("update") == best["update"]
                and r.get("split", "").startswith("valid_")}
    expected = (f"checkpoints/best: update {best['update']}, dev PER {100 * best['per']:.2f}% "
                f"(aa {100 * per_lang['aa']:.2f}%, bb {100 * per_lang['bb']:.2f}%)")
    assert expected in out
    assert (run / "checkpoints" / "best").resolve().name == f"update_{best['update']:07d}"


def test_the_new_head_hint_is_what_the_command_line_takes(tmp_path):
    train = write_tone_corpus(tmp_path, "train", 2, seed=1)
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    ckpt = save_checkpoint(tmp_path / "ctc", Wav2Vec2ForCTC(cfg, 4), vocab=["<blank>", "<unk>", "a", "i"],
                           metadata={"labels": "phones"})
    with pytest.raises(XlsrError, match=r"pass --new-head true to build a new head"):
        FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt)))
    with pytest.raises(XlsrError, match=r"its vocabulary is for phones but --labels is chars; pass --new-head true"):
        FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt), labels="chars"))
