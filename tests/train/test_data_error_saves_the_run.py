"""A data error that stops a one-process run (more bad audio files than max_bad_share: a mount gone, a damaged
copy) first saves the updates trained since the last checkpoint. The batch that stopped it is left unread and its
files uncharged, so the same command, once the data are back, goes on as the run would have gone."""

import pytest

from xlsr.data import batching
from xlsr.errors import AudioError, XlsrError
from xlsr.train import trainer
from xlsr.train.finetune import FinetuneConfig, finetune
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus

SMALL = {"conv_layers": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, "hidden_size": 32,
         "num_layers": 1, "num_heads": 2, "ffn_dim": 64, "conv_pos": 16, "conv_pos_groups": 4}

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(train, out, max_updates: int) -> FinetuneConfig:
    return FinetuneConfig(train=[str(train)], out=str(out), model=SMALL, max_updates=max_updates, log_every=1,
                          save_every=100, max_tokens=60_000, lr_schedule="constant", warmup_updates=0,
                          freeze_feature_encoder=False, freeze_updates=0, progress=False, tensorboard=False)


def _losses(run) -> list[float]:
    return [r["loss"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"]


def test_the_audio_gone_mid_run_saves_the_run_and_the_same_command_goes_on_as_it_would_have(tmp_path, monkeypatch,
                                                                                            capsys):
    train = write_tone_corpus(tmp_path / "tones", "train", 24, seed=1)
    finetune(_config(train, tmp_path / "straight", 5))

    gone = {"after": 2}  # the audio is unreadable from the batch after this update on
    load, train_one = batching.load_audio, trainer.Trainer._train_one_update

    def load_audio(path, *args, **kwargs):
        if gone["after"] is None:
            return load(path, *args, **kwargs)
        raise AudioError(f"{path}: Input/output error")

    def train_one_update(self, micro):
        logs = train_one(self, micro)
        if self.update == gone["after"]:
            monkeypatch.setattr(batching, "load_audio", load_audio)
        return logs

    monkeypatch.setattr(trainer.Trainer, "_train_one_update", train_one_update)
    run = tmp_path / "run"
    with pytest.raises(XlsrError, match="more than max_bad_share"):
        finetune(_config(train, run, 5))
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"
    assert "xlsr: stopped at update 2 by the data error below; checkpoint saved in" in capsys.readouterr().err

    gone["after"] = None  # the mount is back: the same command
    finetune(_config(train, run, 5))
    assert _losses(run) == _losses(tmp_path / "straight") and len(_losses(run)) == 5


def test_an_error_before_the_first_update_saves_nothing(tmp_path, monkeypatch):
    train = write_tone_corpus(tmp_path / "tones", "train", 12, seed=1)
    monkeypatch.setattr(batching, "load_audio", lambda path, *a, **k: (_ for _ in ()).throw(AudioError(f"{path}: bad")))
    with pytest.raises(XlsrError, match="more than max_bad_share"):
        finetune(_config(train, tmp_path / "run", 3))
    assert not (tmp_path / "run" / "checkpoints" / "last").exists()  # a fresh start stays a fresh start


def test_a_shard_stream_gone_bad_mid_run_saves_it_and_goes_on_as_it_would_have(tmp_path, monkeypatch, capsys):
    from xlsr.data import shard_stream
    from xlsr.data.shards import write_shards
    from xlsr.train.pretrain import PretrainConfig, pretrain

    from ._audio import TINY_MODEL, make_corpus

    shards = tmp_path / "shards"
    write_shards(make_corpus(tmp_path / "tones", per_lang=6), shards, shard_size=40_000, show_progress=False)

    def config(out):
        return PretrainConfig(data=str(shards), out=str(out), preset="tiny", model=dict(TINY_MODEL), max_updates=5,
                              lr=2e-3, warmup_updates=2, max_tokens=64000, min_sample_size=8000,
                              max_sample_size=16000, num_workers=0, log_every=1, valid_every=0, save_every=100,
                              progress=False, tensorboard=False, device="cpu", max_bad_share=0.05,
                              feature_health_frames=0)

    # a shard stream resumes exactly at shard granularity (the shards open at the checkpoint are read again): the
    # run to match is one stopped at update 2 (as by Ctrl-C) and resumed
    decode, train_one = shard_stream.decode_audio, trainer.Trainer._train_one_update

    def stopped_at_2(self, micro):
        if self.update == 1:
            self._stop_pending = True  # seen by update 2's all-reduce, as a signal would be
        return train_one(self, micro)

    monkeypatch.setattr(trainer.Trainer, "_train_one_update", stopped_at_2)
    pretrain(config(tmp_path / "stopped"))
    assert (tmp_path / "stopped" / "checkpoints" / "last").resolve().name == "update_0000002"
    monkeypatch.setattr(trainer.Trainer, "_train_one_update", train_one)
    pretrain(config(tmp_path / "stopped"))

    def unreadable(data, name, *args, **kwargs):
        raise AudioError(f"{name}: Input/output error")

    def train_one_update(self, micro):
        logs = train_one(self, micro)
        if self.update == 2:
            monkeypatch.setattr(shard_stream, "decode_audio", unreadable)
        return logs

    monkeypatch.setattr(trainer.Trainer, "_train_one_update", train_one_update)
    run = tmp_path / "run"
    with pytest.raises(XlsrError, match="more than max_bad_share"):
        pretrain(config(run))
    assert (run / "checkpoints" / "last").resolve().name == "update_0000002"
    assert "xlsr: stopped at update 2 by the data error below" in capsys.readouterr().err

    monkeypatch.setattr(shard_stream, "decode_audio", decode)
    monkeypatch.setattr(trainer.Trainer, "_train_one_update", train_one)
    pretrain(config(run))
    assert _losses(run) == _losses(tmp_path / "stopped") and len(_losses(run)) == 5
