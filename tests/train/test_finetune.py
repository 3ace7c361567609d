"""CTC fine-tuning: learning a tone corpus, vocabulary, filtering, freezing, --init, bad input."""

import json
import logging
from pathlib import Path

import pytest
import torch

from xlsr.data.batching import FinetuneBatch, pad_waveforms
from xlsr.errors import XlsrError
from xlsr.interop.native import load_checkpoint, save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.model.feature_encoder import conv_output_lengths
from xlsr.text.labels import ctc_min_frames
from xlsr.train.finetune import FinetuneConfig, FinetuneTask, finetune
from xlsr.train.monitor import read_log

from ._tones import write_tone_corpus

# The tiny preset's layout (layer-norm CNN, pre-LN Transformer) at a width a CPU trains in seconds.
SMALL = {"conv_layers": [[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2, "hidden_size": 64,
         "num_layers": 2, "num_heads": 2, "ffn_dim": 256, "conv_pos": 32, "conv_pos_groups": 4}
QUIET = {"progress": False, "tensorboard": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    return write_tone_corpus(root, "train", 32, seed=1), write_tone_corpus(root, "dev", 8, seed=2)


def small_ckpt(path: Path, cls=Wav2Vec2ForPreTraining, **kw):
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    model = cls(cfg, **kw) if kw else cls(cfg)
    return save_checkpoint(path, model, vocab=kw.get("vocab_tokens")), model


def _scratch_config(train, dev, out, max_updates):
    # Training from scratch proper: the random CNN and Transformer train from the first update (the defaults
    # freeze the CNN, and the Transformer for half the run, whatever the init).
    return FinetuneConfig(train=[str(train)], dev=[str(dev)] if dev else [], out=str(out), init="none",
                          freeze_feature_encoder=False, freeze_updates=0,
                          model={**SMALL, "mask_prob": 0.0, "mask_channel_prob": 0.0, "layerdrop": 0.0,
                                 "activation_dropout": 0.0},
                          max_updates=max_updates, lr=3e-3, lr_schedule="constant", warmup_updates=5,
                          max_tokens=160_000, valid_every=40, log_every=1, seed=1, **QUIET)


def test_finetuning_from_scratch_learns_the_tones(tones, tmp_path):
    train, dev = tones
    # 80 updates: seeds 1-6 of this config all reach dev PER 0 by update 80, 5 of them (seed 1 too) by update 40.
    run = finetune(_scratch_config(train, dev, tmp_path / "run", 80))
    valid = [r for r in read_log(run / "log.jsonl") if r.get("split") == "valid"]
    # Chance: 3 equiprobable tones -> 2/3 substitutions at best; all blanks -> 100%.
    assert valid[0]["update"] == 40 and valid[-1]["update"] == 80
    assert valid[-1]["per"] < 0.4
    best = load_checkpoint(run / "checkpoints" / "best")
    assert best.vocab == ["<blank>", "<unk>", "a", "i", "u"] and best.metadata["labels"] == "phones"
    assert json.loads((run / "data_report.json").read_text())["train_utterances"] == 32


def test_finetuning_is_deterministic(tones, tmp_path):
    train, _ = tones
    losses = []
    for name in ("a", "b"):
        run = finetune(_scratch_config(train, None, tmp_path / name, 4))
        losses.append([r["loss"] for r in read_log(run / "log.jsonl") if r.get("split") == "train"])
    assert len(losses[0]) == 4 and losses[0] == losses[1]


def test_union_vocabulary_and_filtering(tmp_path):
    a = write_tone_corpus(tmp_path, "train", 3, seed=1, lang="aa")
    b = write_tone_corpus(tmp_path, "train", 3, seed=2, lang="bb")
    rows = [json.loads(x) for x in b.read_text().splitlines()]
    rows[0]["phones"] = "e " * 200  # far more phones than its ~60 frames
    rows[1]["phones"] = ""
    b.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = FinetuneTask(FinetuneConfig(train=[str(a), str(b)], out=str(tmp_path / "r"), model=SMALL))
    assert task.vocab.tokens == ["<blank>", "<unk>", "a", "e", "i", "u"]  # union over both languages
    report = task.data.filter_reports[str(b)]
    assert (report.total, len(report.label_too_long), len(report.empty_label), report.kept) == (3, 1, 1, 1)
    assert "whose label is longer than their frames" in report.summary("b.jsonl")
    assert len(task.data.train_utts) == 4


def test_raw_transcripts_in_a_character_vocabulary_are_named(tmp_path, caplog):
    train = write_tone_corpus(tmp_path, "train", 3, seed=1, lang="aa")
    rows = [json.loads(x) for x in train.read_text().splitlines()]
    rows[0]["text"] = "Ai, ua!"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with caplog.at_level(logging.WARNING):
        FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), model=SMALL, labels="chars"))
    warned = [r.getMessage() for r in caplog.records if "character vocabulary" in r.getMessage()]
    assert len(warned) == 1 and "1 capital(s) beside their lower-case letters (A)" in warned[0]
    assert "2 punctuation mark(s) or symbol(s) (! ,)" in warned[0] and "xlsr data normalize-text" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # phone labels and clean text: no such warning
        FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "p"), model=SMALL))
    assert not [r for r in caplog.records if "character vocabulary" in r.getMessage()]


def test_frame_arithmetic():
    tiny = Wav2Vec2Config.preset("tiny")
    assert [tiny.num_frames(n) for n in (16000, 400, 399)] == [49, 1, 0]
    frames = torch.arange(6000)  # the integer arithmetic equals the CNN's own length rule
    for _, kernel, stride in tiny.conv_layers:
        frames = conv_output_lengths(frames, kernel, stride)
    assert [tiny.num_frames(n) for n in range(6000)] == frames.tolist()
    assert ctc_min_frames([2, 2, 3]) == 4 and ctc_min_frames([2, 3, 2]) == 3


def test_streamed_utterances_are_filtered_as_manifest_ones():
    from xlsr.data.manifest import Utterance
    from xlsr.text.labels import learnable
    from xlsr.text.vocab import Vocabulary
    from xlsr.train.shard_finetune import ShardLabeler

    tiny = Wav2Vec2Config.preset("tiny")
    vocab = Vocabulary(["<blank>", "<unk>", "a", "b"], kind="phones")
    labeler = ShardLabeler(vocab, "phones", tiny.conv_layers)
    for n in (399, 400, 719, 720, 1040, 1360, 16000):
        for label in ("a", "a a", "a b a b", "b b b", "", " ", None):
            keep, _ = learnable([Utterance("x.flac", n, "xx", phones=label)], vocab, "phones", tiny.num_frames)
            got = labeler({"num_samples": n, "phones": label})
            assert (got is not None) == bool(keep[0]) and (got is None or got == vocab.encode(label.strip()))


def test_init_drops_pretraining_heads_and_freezes(tones, tmp_path):
    train, dev = tones
    ckpt, pre = small_ckpt(tmp_path / "pre")
    cfg = FinetuneConfig(train=[str(train)], out=str(tmp_path / "run"), init=str(ckpt), freeze_updates=2,
                         max_updates=2, max_tokens=80_000, model={"layerdrop": 0.0}, **QUIET)
    run = finetune(cfg)
    tuned = load_checkpoint(run / "checkpoints" / "last").model
    assert isinstance(tuned, Wav2Vec2ForCTC) and not any(k.startswith("quantizer") for k in tuned.state_dict())
    before, after = pre.wav2vec2.state_dict(), tuned.wav2vec2.state_dict()
    # Both updates fall in the frozen phase: the whole encoder is untouched, only the head moved.
    assert all(torch.equal(before[k], after[k]) for k in before)
    task = FinetuneTask(cfg)
    model = task.build_model()
    task.on_update_start(model, 1)
    assert not any(p.requires_grad for p in model.wav2vec2.parameters())
    assert all(p.requires_grad for p in model.lm_head.parameters())
    task.on_update_start(model, 2)
    assert all(p.requires_grad for p in model.wav2vec2.encoder.parameters())
    assert not any(p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())  # CNN: always frozen


def test_one_protocol_for_every_init_by_default(tones, tmp_path):
    """The CNN is frozen and the Transformer frozen for the first half of the run, pretrained init or not."""
    train, _ = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    kw = dict(train=[str(train)], out=str(tmp_path / "r"), max_updates=300)
    for init in ("none", str(ckpt)):
        task = FinetuneTask(FinetuneConfig(init=init, model=SMALL if init == "none" else {}, **kw))
        assert task.freeze_cnn and task.model_config.feature_grad_mult == 0.0
        assert task.freeze_updates == 150 and set(task.feature_caches) == {"train"}
        model = task.build_model()
        assert not any(p.requires_grad for p in model.wav2vec2.feature_encoder.parameters())
        task.on_update_start(model, 149)
        assert not any(p.requires_grad for p in model.wav2vec2.encoder.parameters())
        task.on_update_start(model, 150)
        assert all(p.requires_grad for p in model.wav2vec2.encoder.parameters())
    # An explicit count replaces the share; a share outside [0, 1] is one line.
    assert FinetuneTask(FinetuneConfig(init=str(ckpt), freeze_updates=7, **kw)).freeze_updates == 7
    assert FinetuneTask(FinetuneConfig(init=str(ckpt), freeze_ratio=0.1, **kw)).freeze_updates == 30
    with pytest.raises(XlsrError, match="freeze_ratio: must be between 0 and 1, got 1.5"):
        FinetuneConfig(freeze_ratio=1.5)
    with pytest.raises(XlsrError, match="freeze_updates: must be at least 0, got -1"):
        FinetuneConfig(freeze_updates=-1)


def test_vocabulary_mismatch_with_a_ctc_checkpoint(tones, tmp_path):
    train, _ = tones
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    ckpt = save_checkpoint(tmp_path / "ctc", Wav2Vec2ForCTC(cfg, 4), vocab=["<blank>", "<unk>", "a", "i"],
                           metadata={"labels": "phones"})
    with pytest.raises(XlsrError) as err:
        FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt)))
    msg = str(err.value)
    assert "not in the vocabulary of" in msg and "'u'×" in msg and "--new-head" in msg and "\n" not in msg
    task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt), new_head=True))
    assert task.vocab.tokens == ["<blank>", "<unk>", "a", "i", "u"]


def test_bad_input_is_one_line(tones, tmp_path):
    train, _ = tones
    with pytest.raises(XlsrError, match="give at least one training manifest"):
        FinetuneTask(FinetuneConfig(out=str(tmp_path)))
    with pytest.raises(XlsrError, match="model.nope: unknown Wav2Vec2Config field"):
        FinetuneTask(FinetuneConfig(train=[str(train)], model={"nope": 1}))
    with pytest.raises(XlsrError, match="no utterance has a 'text' label"):
        empty = tmp_path / "e.jsonl"
        empty.write_text("".join(json.dumps({**json.loads(x), "text": ""}) + "\n"
                                 for x in train.read_text().splitlines()))
        FinetuneTask(FinetuneConfig(train=[str(empty)], labels="chars", model=SMALL))


def test_resume_continues_exactly(tones, tmp_path):
    train, _ = tones
    # From scratch with every weight training, as before the defaults froze the CNN and half the run for any init.
    kw = dict(train=[str(train)], model=SMALL, log_every=1, save_every=3, max_tokens=80_000,
              lr_schedule="constant", warmup_updates=0, freeze_feature_encoder=False, freeze_updates=0, **QUIET)
    finetune(FinetuneConfig(out=str(tmp_path / "a"), max_updates=3, **kw))
    finetune(FinetuneConfig(out=str(tmp_path / "a"), max_updates=6, **kw))  # resumes at update 3
    finetune(FinetuneConfig(out=str(tmp_path / "b"), max_updates=6, **kw))

    def losses(run):
        return [r["loss"] for r in read_log(tmp_path / run / "log.jsonl") if r.get("split") == "train"]
    assert len(losses("a")) == 6 and losses("a") == losses("b")


# --- how CTC weighs utterances (ctc_loss) ----------------------------------------------------------------------

class _GivenBatches(FinetuneTask):
    """Fine-tuning whose every epoch is the given micro-batches."""

    def __init__(self, cfg, batches):
        super().__init__(cfg)
        self.batches = batches

    def train_batches(self, epoch, skip=0):
        return iter(self.batches[skip:])


def _utterances_of_unequal_labels(task, n: int) -> list[tuple]:
    """`n` utterances of the training batches, (waveform, labels, lang, id) each, no two with as many labels."""
    found = {}
    for batch in task.train_batches(0):
        for b, m in enumerate(batch.label_lengths.tolist()):
            found.setdefault(m, (batch.waveforms[b, : int(batch.lengths[b])], batch.labels[b, :m],
                                 batch.langs[b], batch.ids[b]))
    assert len(found) >= n
    return [found[m] for m in sorted(found)[:n]]


def _batch(utterances) -> FinetuneBatch:
    """One zero-padded batch of (waveform, labels, lang, id) tuples."""
    waveforms, lengths = pad_waveforms([u[0] for u in utterances])
    labels = torch.nn.utils.rnn.pad_sequence([u[1] for u in utterances], batch_first=True)
    return FinetuneBatch(waveforms, lengths, labels, torch.tensor([len(u[1]) for u in utterances]),
                         [u[2] for u in utterances], [u[3] for u in utterances])


def _same_every_forward(train, out, **kw) -> FinetuneConfig:
    # No masks, dropout or LayerDrop: the Trainer's forward is the test's; the Transformer trains from update 0.
    return FinetuneConfig(train=[str(train)], out=str(out), freeze_updates=0, max_tokens=160_000, lr=1e-4,
                          lr_schedule="constant", warmup_updates=0, log_every=1, seed=5,
                          model={**SMALL, "mask_prob": 0.0, "mask_channel_prob": 0.0, "layerdrop": 0.0,
                                 "activation_dropout": 0.0}, **kw, **QUIET)


def _one_update(train, out, micro, ctc_loss) -> dict:
    """The train record of one Trainer update over the micro-batches `micro` (update_freq: their count)."""
    from xlsr.config import config_to_dict
    from xlsr.train.trainer import Trainer

    cfg = _same_every_forward(train, out, ctc_loss=ctc_loss, update_freq=len(micro), max_updates=1)
    run = Trainer(cfg, _GivenBatches(cfg, micro), resolved_config=config_to_dict(cfg)).fit()
    [record] = [r for r in read_log(run / "log.jsonl") if r.get("split") == "train"]
    return record


def test_sentence_ctc_loss_is_fairseqs_sentence_avg_over_the_whole_update(tones, tmp_path):
    import torch.nn.functional as F

    from xlsr.train.checkpoint import seed_everything

    train, _ = tones
    task = FinetuneTask(_same_every_forward(train, tmp_path / "ref", ctc_loss="sentence"))
    utterances = _utterances_of_unequal_labels(task, 4)  # 3 to 6 labels
    whole, one, three = _batch(utterances), _batch(utterances[:1]), _batch(utterances[1:])
    # By hand, on the weights the Trainer starts from: the utterances' -log p summed, over their count.
    seed_everything(task.cfg.seed)
    model = task.build_model().train()
    out = model(whole.waveforms, whole.lengths)
    nll = F.ctc_loss(out.logits.log_softmax(-1).transpose(0, 1), whole.labels, out.frame_lengths,
                     whole.label_lengths, reduction="none", zero_infinity=True)  # (4,) nats per utterance
    (nll.sum() / 4).backward()
    nll = nll.detach()
    grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    split = _one_update(train, tmp_path / "split", [one, three], "sentence")  # micro-batches of 1 and 3
    alone = _one_update(train, tmp_path / "alone", [whole], "sentence")  # one batch of all 4
    for record in (split, alone):
        assert record["sentence_loss"] == pytest.approx(float(nll.mean()), rel=1e-4)
        assert record["grad_norm"] == pytest.approx(float(grad_norm), rel=1e-4)
        assert record["loss"] == pytest.approx(float((nll / whole.label_lengths).mean()), rel=1e-4)  # nats per label
        assert record["sample_size"] == 4
    # mean weighs each micro-batch alike (1 utterance as much as 3), and each utterance by 1 / its label count
    mean_split = _one_update(train, tmp_path / "mean_split", [one, three], "mean")
    mean_alone = _one_update(train, tmp_path / "mean_alone", [whole], "mean")
    assert mean_split["grad_norm"] != pytest.approx(mean_alone["grad_norm"], rel=1e-3)
    assert mean_alone["grad_norm"] != pytest.approx(alone["grad_norm"], rel=1e-3)


def test_the_default_mean_ctc_loss_is_the_one_trained_before(tones, tmp_path):
    import torch.nn.functional as F

    train, _ = tones
    task = FinetuneTask(_same_every_forward(train, tmp_path / "r"))
    assert task.cfg.ctc_loss == "mean"
    model = task.build_model().train()
    batch = next(task.train_batches(0))
    loss, logs = task.train_step(model, batch)
    assert "sample_size" not in logs and "sentence_loss" not in logs  # one unit per micro-batch, as before
    # the loss as computed before ctc_loss existed: torch's "mean" over the same logits, bit for bit
    out = task.ctc_forward(model, batch, with_loss=False)
    with torch.no_grad():
        before = F.ctc_loss(out.logits.float().log_softmax(dim=-1).transpose(0, 1), batch.labels.long().clamp(min=0),
                            out.frame_lengths, batch.label_lengths.long(), blank=0, reduction="mean",
                            zero_infinity=True)
    assert torch.equal(loss.detach(), before) and torch.equal(logs["loss"], before)
    with pytest.raises(XlsrError, match=r"^ctc_loss: 'token' is not one of mean, sentence$"):
        FinetuneConfig(ctc_loss="token")


# --- frozen-CNN feature cache ---------------------------------------------------------------------------------

def _cached_run(train, dev, ckpt, out, *, cache: bool, max_updates: int, feature_caches=None, **extra):
    """Fine-tune from a pretrained init through the Trainer; returns (task, train losses, valid records)."""
    from xlsr.config import config_to_dict
    from xlsr.train.trainer import Trainer

    # freeze_updates=2: the Transformer and feature_norm train for most updates, masks and dropout are on.
    cfg = FinetuneConfig(**{**dict(train=[str(train)], dev=[str(dev)] if dev else [], out=str(out), init=str(ckpt),
                                   cache_features=cache, freeze_updates=2, max_updates=max_updates,
                                   max_tokens=160_000, lr=3e-3, lr_schedule="constant", warmup_updates=0,
                                   log_every=1, seed=3,
                                   model={"mask_prob": 0.2, "mask_length": 3, "activation_dropout": 0.1}),
                            **extra, **QUIET})
    task = FinetuneTask(cfg, feature_caches)
    if feature_caches is not None:
        feature_caches.update(task.feature_caches)
    run = Trainer(cfg, task, resolved_config=config_to_dict(cfg)).fit()
    records = read_log(run / "log.jsonl")
    return task, [r["loss"] for r in records if r.get("split") == "train"], \
        [r for r in records if r.get("split") == "valid"]


def test_feature_cache_gives_the_same_run_as_the_cnn(tones, tmp_path):
    train, dev = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    off, losses_off, valid_off = _cached_run(train, dev, ckpt, tmp_path / "off", cache=False, max_updates=10,
                                             valid_every=5)
    on, losses_on, valid_on = _cached_run(train, dev, ckpt, tmp_path / "on", cache=True, max_updates=10,
                                          valid_every=5)
    assert off.feature_caches == {} and set(on.feature_caches) == {"train", "dev"}
    cache = on.feature_caches["train"]
    # Every training utterance went through the CNN once; every later sight of it was a cache hit.
    assert len(cache) == cache.misses == 32 and cache.hits > 32
    assert on.feature_caches["dev"].hits == 8 and len(on.feature_caches["dev"]) == 8  # 2 validations
    assert len(losses_on) == 10 and losses_on != losses_on[:1] * 10
    assert losses_on == pytest.approx(losses_off, rel=1e-4, abs=1e-5)
    assert [v["per"] for v in valid_on] == pytest.approx([v["per"] for v in valid_off])
    assert [v["loss"] for v in valid_on] == pytest.approx([v["loss"] for v in valid_off], rel=1e-4, abs=1e-5)


def test_resume_with_the_feature_cache_continues_exactly(tones, tmp_path):
    train, _ = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    _cached_run(train, None, ckpt, tmp_path / "a", cache=True, max_updates=3, save_every=3)
    resumed, losses_a, _ = _cached_run(train, None, ckpt, tmp_path / "a", cache=True, max_updates=6)
    _, losses_b, _ = _cached_run(train, None, ckpt, tmp_path / "b", cache=True, max_updates=6)
    # The cache is not in the checkpoint: the resumed run refilled it, with the same values.
    assert resumed.feature_caches["train"].misses > 0
    assert len(losses_a) == 6 and losses_a == losses_b


def test_feature_cache_only_where_the_cnn_output_is_fixed_and_padding_free(tones, tmp_path):
    train, dev = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    kw = dict(train=[str(train)], out=str(tmp_path / "r"))
    assert set(FinetuneTask(FinetuneConfig(init=str(ckpt), **kw)).feature_caches) == {"train"}
    assert FinetuneTask(FinetuneConfig(init=str(ckpt), cache_features=False, **kw)).feature_caches == {}
    assert FinetuneTask(FinetuneConfig(init=str(ckpt), freeze_feature_encoder=False, **kw)).feature_caches == {}
    # A random CNN trained from scratch changes; a frozen one (the default, whatever the init) is fixed too.
    assert FinetuneTask(FinetuneConfig(init="none", model=SMALL, freeze_feature_encoder=False, **kw)).feature_caches == {}
    frozen = FinetuneTask(FinetuneConfig(init="none", model=SMALL, **kw))
    assert set(frozen.feature_caches) == {"train"}
    # group_norm: the first layer normalizes over each utterance's valid steps only, so the cache is exact too.
    # (a checkpoint of that architecture: --init's extractor_mode cannot be overridden, its weights are a LayerNorm CNN's)
    gn_config = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL,
                                          "extractor_mode": "group_norm"})
    gn_ckpt = save_checkpoint(tmp_path / "gn", Wav2Vec2ForPreTraining(gn_config))
    gn = FinetuneTask(FinetuneConfig(init=str(gn_ckpt), **kw))
    assert set(gn.feature_caches) == {"train"}
    # Ids key the cache: duplicates (here across two manifests) turn it off.
    twin = tmp_path / "twin" / "train.jsonl"
    twin.parent.mkdir()
    twin.write_text(train.read_text().replace('"wav/', f'"{train.parent}/wav/'))
    dup = FinetuneTask(FinetuneConfig(init=str(ckpt), train=[str(train), str(twin)], out=str(tmp_path / "r")))
    assert len(dup.data.train_utts) == 64 and dup.feature_caches == {}


def test_a_feature_cache_shared_by_seeds_of_one_init_and_refused_by_another_cnn(tones, tmp_path):
    train, dev = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    caches = {}
    _cached_run(train, dev, ckpt, tmp_path / "s1", cache=True, max_updates=4, valid_every=4, feature_caches=caches)
    assert set(caches) == {"train", "dev"} and caches["train"].misses == 32 and caches["dev"].misses == 8
    shared, losses_shared, valid_shared = _cached_run(train, dev, ckpt, tmp_path / "s2", cache=True, max_updates=4,
                                                      valid_every=4, seed=4, feature_caches=caches)
    assert shared.feature_caches["train"] is caches["train"]
    assert caches["train"].misses == 32 and caches["dev"].misses == 8  # the second seed never ran the CNN
    # ... and trained exactly as with a cache of its own
    own, losses_own, valid_own = _cached_run(train, dev, ckpt, tmp_path / "own", cache=True, max_updates=4,
                                             valid_every=4, seed=4)
    assert own.feature_caches["train"].misses == 32
    assert losses_shared == losses_own and [v["per"] for v in valid_shared] == [v["per"] for v in valid_own]
    # Another CNN (another init) must not read it: one line, before any update.
    other, _ = small_ckpt(tmp_path / "other")
    with pytest.raises(XlsrError, match="feature cache: it holds the output of another CNN"):
        _cached_run(train, dev, other, tmp_path / "o", cache=True, max_updates=4, feature_caches=caches)
    assert not (tmp_path / "o" / "checkpoints").exists()


def test_feature_cache_batch_equals_the_cnn_on_the_padded_batch(tones, tmp_path):
    train, _ = tones
    ckpt, _ = small_ckpt(tmp_path / "pre")
    task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt),
                                       max_tokens=80_000))
    model = task.build_model()
    cache = task.feature_caches["train"]
    batch = next(task.train_batches(0))
    assert len(set(batch.lengths.tolist())) > 1  # a padded batch
    with torch.no_grad():
        ref, ref_frames = model.wav2vec2.features(batch.waveforms, batch.lengths)
    for _ in range(2):  # filled, then served
        feats, frames = cache.batch_features(model.wav2vec2, batch.waveforms, batch.lengths, batch.ids)
        assert feats.shape == ref.shape and frames.tolist() == ref_frames.tolist()
        for i, n in enumerate(frames.tolist()):
            torch.testing.assert_close(feats[i, :n], ref[i, :n], rtol=1e-5, atol=1e-5)
            assert not feats[i, n:].any()  # padding rebuilt as zeros
            assert cache.entries[batch.ids[i]].shape == (n, ref.shape[-1])  # stored unpadded
    assert cache.misses == len(batch.ids) and cache.hits == len(batch.ids)


# --- the tiny preset itself ------------------------------------------------------------------------------------

def _tiny_config(train, dev, ckpt, out, max_updates):
    return FinetuneConfig(train=[str(train)], dev=[str(dev)] if dev else [], out=str(out), init=str(ckpt),
                          cache_features=True, freeze_updates=0,
                          model={"mask_prob": 0.0, "mask_channel_prob": 0.0, "layerdrop": 0.0,
                                 "activation_dropout": 0.0},
                          max_updates=max_updates, lr=1e-3, lr_schedule="constant", warmup_updates=10,
                          max_tokens=160_000, valid_every=0, log_every=1, seed=1, **QUIET)


def test_tiny_preset_learns_the_tones_with_a_frozen_cached_cnn(tones, tmp_path):
    train, dev = tones
    # A random tiny encoder saved as a pretraining checkpoint, fine-tuned with the library's fresh CTC head: it
    # starts blank-dominated (blank_bias), as CTC learning expects. With PyTorch's plain head init (blank_bias 0)
    # this encoder starts on symbols and settles in a blank-free solution that memorizes the training utterances
    # (dev PER 0.75 at 60 updates), as 4 of 6 random encoders did; with the default all 6 reach PER <= 0.025.
    with torch.random.fork_rng():
        torch.manual_seed(2)
        pre = Wav2Vec2ForPreTraining(Wav2Vec2Config.preset("tiny"))
    ckpt = save_checkpoint(tmp_path / "pre", pre)
    run = finetune(_tiny_config(train, dev, ckpt, tmp_path / "run", 60))
    records = read_log(run / "log.jsonl")
    train_logs = [r for r in records if r.get("split") == "train"]
    valid = [r for r in records if r.get("split") == "valid"]
    assert train_logs[0]["blank_share"] > 0.9  # the first stage of CTC training: all blanks
    assert valid[-1]["update"] == 60 and valid[-1]["per"] < 0.4  # chance: 2/3 at best
    tuned = load_checkpoint(run / "checkpoints" / "last").model
    assert isinstance(tuned, Wav2Vec2ForCTC)
    assert {k: v.shape for k, v in tuned.wav2vec2.state_dict().items()} == \
        {k: v.shape for k, v in pre.wav2vec2.state_dict().items()}
    # Deterministic: a second, short run repeats the first updates exactly.
    again = finetune(_tiny_config(train, None, ckpt, tmp_path / "again", 3))
    losses = [r["loss"] for r in train_logs]
    assert [r["loss"] for r in read_log(again / "log.jsonl") if r.get("split") == "train"] == losses[:3]


def test_a_fresh_ctc_head_starts_blank_dominated_and_a_loaded_one_is_kept(tones, tmp_path):
    train, _ = tones

    def head(**kw):
        task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), **kw))
        torch.manual_seed(0)
        return task.build_model().lm_head

    plain, fresh = head(model=SMALL, blank_bias=0.0), head(model=SMALL)  # from scratch, default blank_bias
    assert fresh.bias[0].item() == pytest.approx(plain.bias[0].item() + FinetuneConfig.blank_bias)
    assert torch.equal(fresh.bias[1:], plain.bias[1:]) and torch.equal(fresh.weight, plain.weight)
    # A CTC checkpoint whose vocabulary is reused keeps its head exactly; --new-head gets a fresh, biased one.
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    ctc = Wav2Vec2ForCTC(cfg, 5)
    ckpt = save_checkpoint(tmp_path / "ctc", ctc, vocab=["<blank>", "<unk>", "a", "i", "u"],
                           metadata={"labels": "phones"})
    kept = head(init=str(ckpt))
    assert torch.equal(kept.bias, ctc.lm_head.bias) and torch.equal(kept.weight, ctc.lm_head.weight)
    assert head(init=str(ckpt), new_head=True, blank_bias=5.0).bias[0] > 4.0
    # A command-line option like every FinetuneConfig field; a non-finite value is one line naming the field.
    from xlsr.cli.main import build_parser
    from xlsr.config import collect_overrides, load_config

    assert collect_overrides(build_parser().parse_args(["finetune", "--blank-bias", "2"])) == {"blank_bias": "2"}
    assert load_config(FinetuneConfig, None, {"blank_bias": "0"}).blank_bias == 0.0
    with pytest.raises(XlsrError, match="blank_bias: cannot use 'nan' as float"):
        load_config(FinetuneConfig, None, {"blank_bias": "nan"})
    with pytest.raises(XlsrError, match="blank_bias: must be a finite number"):
        load_config(FinetuneConfig, None, {"blank_bias": "inf"})


def test_run_folder_of_another_run_is_refused_before_anything_is_written(tones, tmp_path):
    train, _ = tones
    pretraining = tmp_path / "pt"  # what `xlsr pretrain` leaves: a data folder, no labels
    pretraining.mkdir()
    (pretraining / "config.yaml").write_text("data: corpus\nalpha: 0.5\npreset: tiny\ninit: null\n")
    with pytest.raises(XlsrError, match=r"pt: holds another kind of run, or one of another xlsr version \(its config.yaml has alpha, data"):
        finetune(FinetuneConfig(train=[str(train)], out=str(pretraining), model=SMALL, **QUIET))
    assert [p.name for p in pretraining.iterdir()] == ["config.yaml"]
    kw = dict(train=[str(train)], out=str(tmp_path / "ft"), model=SMALL, max_updates=1, max_tokens=80_000, **QUIET)
    finetune(FinetuneConfig(**kw))
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ft").rglob("*") if p.is_file()}
    ckpt, _ = small_ckpt(tmp_path / "pre")
    with pytest.raises(XlsrError, match=r"ft: holds a run with init 'none' \(config.yaml\), not '.*pre'"):
        finetune(FinetuneConfig(**{**kw, "init": str(ckpt), "max_updates": 2}))
    with pytest.raises(XlsrError, match=r"ft: holds a run with another model \(model.hidden_size: 64 there, 32 now\)"):
        finetune(FinetuneConfig(**{**kw, "model": {**SMALL, "hidden_size": 32}, "max_updates": 2}))
    saved = json.loads((tmp_path / "ft" / "checkpoints" / "last" / "config.json").read_text())["vocab"]
    i, j = [k for k, t in enumerate(saved) if t not in ("<blank>", "<unk>", "|")][:2]
    saved[i], saved[j] = saved[j], saved[i]  # the same tokens, two of them in each other's rows
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"kind": "phones", "tokens": saved}))
    with pytest.raises(XlsrError, match=rf"ft: holds a run with another vocabulary \(\d+ tokens there, \d+ now; "
                                        rf"first difference at index {i}\)"):
        finetune(FinetuneConfig(**{**kw, "vocab": str(swapped), "max_updates": 2}))
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ft").rglob("*") if p.is_file()} == before


def test_resume_after_a_batch_whose_files_all_failed_continues_exactly(tones, tmp_path):
    import shutil

    from xlsr.train import checkpoint as ckpt

    train, _ = tones
    corpus = tmp_path / "corpus"
    shutil.copytree(train.parent, corpus / train.parent.name)
    for k, wav in enumerate(sorted((corpus / train.parent.name / "wav").glob("train_*.wav"))):
        if k % 3 == 0:
            wav.write_bytes(b"not audio")  # a third of the files unreadable
    kw = dict(train=[str(corpus / train.parent.name / "train.jsonl")], model=SMALL, log_every=1, save_every=4,
              max_tokens=24_000, max_bad_share=0.6, lr_schedule="constant", warmup_updates=0, freeze_updates=0,
              **QUIET)
    finetune(FinetuneConfig(out=str(tmp_path / "a"), max_updates=4, **kw))
    state = ckpt.load_trainer_state(tmp_path / "a" / "checkpoints" / "last")
    assert state["task"][0]["loader"]["position"] > state["batches_in_epoch"]  # a planned batch yielded nothing
    finetune(FinetuneConfig(out=str(tmp_path / "a"), max_updates=8, **kw))  # resumes at update 4
    finetune(FinetuneConfig(out=str(tmp_path / "b"), max_updates=8, **kw))

    def losses(run):
        return [r["loss"] for r in read_log(tmp_path / run / "log.jsonl") if r.get("split") == "train"]
    assert len(losses("a")) == 8 and losses("a") == losses("b")


def test_a_vocab_file_is_read_as_the_labels_it_is_given_for(tmp_path):
    from types import SimpleNamespace

    from xlsr.train.finetune_data import choose_vocabulary

    init = SimpleNamespace(vocab_tokens=None, labels=None, source="none")
    bare = tmp_path / "v.json"
    bare.write_text(json.dumps(["<blank>", "<unk>", "|", "a", "k", "m", "t"]))  # one-letter phones
    vocab, _ = choose_vocabulary(FinetuneConfig(vocab=str(bare), labels="phones"), init, {})
    assert vocab.kind == "phones" and vocab.encode("m a | k a t a") == [5, 3, 2, 4, 3, 6, 3]
    stated = tmp_path / "chars.json"
    stated.write_text(json.dumps({"kind": "chars", "tokens": ["<blank>", "<unk>", "|", "a"]}))
    with pytest.raises(XlsrError, match=r"chars.json: a vocabulary of chars but --labels is phones"):
        choose_vocabulary(FinetuneConfig(vocab=str(stated), labels="phones"), init, {})


def test_the_feature_cache_counts_an_entry_stored_again_once():
    from xlsr.train.feature_cache import FeatureCache

    cache = FeatureCache(max_bytes=10_000)
    cache._store("u1", torch.zeros(10, 8), 3200)  # 320 bytes
    cache._store("u1", torch.zeros(12, 8), 3840)  # the same id again, another length: replaces it
    assert len(cache) == 1 and cache.nbytes == 12 * 8 * 4 and cache.lengths == {"u1": 3840}


def _rewritten(manifest: Path, out: Path, change=lambda k, row: row) -> Path:
    """`manifest`'s lines, each passed through `change(k, row)` (None drops it), with absolute audio paths."""
    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    rows = [change(k, {**r, "audio": str(manifest.parent / r["audio"])}) for k, r in enumerate(rows)]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows if r is not None))
    return out


def test_dev_utterances_longer_than_the_batch_limit_are_validated_alone(tones, tmp_path):
    train, dev = tones
    limit = sorted(json.loads(x)["num_samples"] for x in train.read_text().splitlines())[16]
    long_dev = _rewritten(dev, tmp_path / "long_dev.jsonl", lambda k, r: r if r["num_samples"] > limit else None)
    n_dev = len(long_dev.read_text().splitlines())
    assert n_dev >= 2  # every dev utterance is longer than max_tokens; training skips 15 of its 32
    cfg = FinetuneConfig(train=[str(train)], dev=[str(long_dev)], out=str(tmp_path / "r"), model=SMALL,
                         max_tokens=limit, max_updates=1, **QUIET)
    task = FinetuneTask(cfg)
    assert [len(b.ids) for b in task.valid_sets()["xx"]] == [1] * n_dev
    report = task.data.report()
    assert report["longer_than_limit"] == {"limit_samples": limit, "train_skipped": {str(train): 15},
                                           "dev_validated": {str(long_dev): n_dev}}
    assert report["train_utterances"] == 17 and report["dev_utterances"] == {"xx": n_dev}
    assert report["dev_filtered"] == {str(long_dev): {"total": n_dev, "kept": n_dev, "empty_label": 0,
                                                      "label_too_long": 0}}
    run = finetune(cfg)
    assert [r["sample_size"] > 0 for r in read_log(run / "log.jsonl") if r.get("split") == "valid"] == [True]
    assert (run / "checkpoints" / "best").exists()
    assert json.loads((run / "data_report.json").read_text()) == report


def test_a_dev_set_with_nothing_to_validate_on_is_an_error_before_training(tones, tmp_path):
    train, dev = tones
    empty = _rewritten(dev, tmp_path / "empty_dev.jsonl", lambda k, r: {**r, "phones": ""})
    with pytest.raises(XlsrError, match=rf"^dev: no utterance is left to validate on \({empty}: skipped 8 with an "
                                        rf"empty label \(e.g. dev_000, dev_001, dev_002\); 0 of 8 kept\)$"):
        finetune(FinetuneConfig(train=[str(train)], dev=[str(empty)], out=str(tmp_path / "r"), model=SMALL, **QUIET))
    assert not (tmp_path / "r").exists()


def test_dev_audio_that_cannot_be_read_is_an_error_before_training(tones, tmp_path):
    import re

    train, dev = tones
    missing = _rewritten(dev, tmp_path / "missing_dev.jsonl",
                         lambda k, r: {**r, "audio": str(tmp_path / f"nope_{k}.wav")} if k < 4 else r)
    first = f"{missing}:1: {tmp_path / 'nope_0.wav'}: no such audio file"
    with pytest.raises(XlsrError, match=rf"^dev set 'xx': 4 of 8 audio files cannot be read, more than "
                                        rf"max_bad_share=0.05 \(first: {re.escape(first)}\)$"):
        finetune(FinetuneConfig(train=[str(train)], dev=[str(missing)], out=str(tmp_path / "r"), model=SMALL,
                                max_updates=2, **QUIET))
    assert not (tmp_path / "r").exists()  # it used to train up to the first validation


def test_a_dev_set_failing_at_a_validation_names_its_manifest_and_keeps_the_updates(tones, tmp_path):
    import re

    from xlsr.train import checkpoint as ckpt

    train, dev = tones
    # readable headers, but not the length the manifest says: the loader refuses them when it decodes them
    stretched = _rewritten(dev, tmp_path / "stretched_dev.jsonl",
                           lambda k, r: {**r, "num_samples": 2 * r["num_samples"]})
    with pytest.raises(XlsrError, match=rf"^dev set 'xx' \({re.escape(str(stretched))}\): \d of 8 audio files .* are bad"):
        finetune(FinetuneConfig(train=[str(train)], dev=[str(stretched)], out=str(tmp_path / "r"), model=SMALL,
                                max_updates=4, valid_every=2, save_every=0, max_tokens=80_000, **QUIET))
    assert ckpt.load_trainer_state(tmp_path / "r" / "checkpoints" / "last")["update"] == 2  # saved, then raised


def test_dev_labels_outside_the_vocabulary_are_warned_and_reported(tones, tmp_path, caplog):
    from xlsr.text.vocab import format_counts

    train, dev = tones
    upper = _rewritten(dev, tmp_path / "upper_dev.jsonl",
                       lambda k, r: {**r, "phones": r["phones"].upper()} if k == 0 else r)
    first = json.loads(upper.read_text().splitlines()[0])["phones"].split()  # e.g. A I U A
    counts = {s: first.count(s) for s in set(first)}
    with caplog.at_level(logging.WARNING):
        task = FinetuneTask(FinetuneConfig(train=[str(train)], dev=[str(upper)], out=str(tmp_path / "r"), model=SMALL))
    warned = [r.getMessage() for r in caplog.records if "dev label symbols" in r.getMessage()]
    assert warned == [f"{upper}: {len(first)} dev label symbols are not in the vocabulary "
                      f"({format_counts(counts, limit=8)}); each is an error in the dev error rate, as xlsr "
                      f"evaluate scores it"]
    assert task.data.report()["oov"] == {str(upper): counts}


def test_labels_that_write_a_reserved_token_are_refused(tones, tmp_path):
    train, dev = tones
    bad_train = _rewritten(train, tmp_path / "bad_train.jsonl",
                           lambda k, r: {**r, "phones": "a <blank> i"} if k == 2 else r)
    with pytest.raises(XlsrError, match=rf"^{bad_train}:3: the 'phones' label writes '<blank>', a token the "
                                        rf"vocabulary reserves"):
        FinetuneTask(FinetuneConfig(train=[str(bad_train)], out=str(tmp_path / "r"), model=SMALL))
    bad_dev = _rewritten(dev, tmp_path / "bad_dev.jsonl", lambda k, r: {**r, "phones": "<unk> a"} if k == 0 else r)
    with pytest.raises(XlsrError, match=rf"^{bad_dev}:1: the 'phones' label writes '<unk>'"):
        FinetuneTask(FinetuneConfig(train=[str(train)], dev=[str(bad_dev)], out=str(tmp_path / "r"), model=SMALL))


def test_a_vocab_file_with_the_init_tokens_keeps_the_init_head(tones, tmp_path, caplog):
    from xlsr.text.vocab import Vocabulary

    train, _ = tones
    tokens = ["<blank>", "<unk>", "a", "i", "u"]
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    ctc = Wav2Vec2ForCTC(cfg, 5)
    ckpt = save_checkpoint(tmp_path / "ctc", ctc, vocab=tokens, metadata={"labels": "phones"})
    same, other = tmp_path / "same.json", tmp_path / "other.json"
    Vocabulary(tokens, "phones").to_json(same)
    Vocabulary(["<blank>", "<unk>", "a", "u", "i"], "phones").to_json(other)  # the same tokens, another order

    def head(**kw):
        task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), init=str(ckpt), **kw))
        return task.data.keep_head, task.build_model().lm_head

    kept, lm_head = head(vocab=str(same))
    assert kept and torch.equal(lm_head.weight, ctc.lm_head.weight) and torch.equal(lm_head.bias, ctc.lm_head.bias)
    with caplog.at_level(logging.WARNING):
        kept, lm_head = head(vocab=str(other))
    assert not kept and not torch.equal(lm_head.weight, ctc.lm_head.weight)
    assert f"{other}: its tokens are not those of {ckpt}" in caplog.text and "a new CTC head is made" in caplog.text
    assert not head(vocab=str(same), new_head=True)[0]


def test_the_all_blank_warning_can_fire_within_the_run(tones, tmp_path):
    import yaml

    from xlsr.train.finetune import all_blank_after
    from xlsr.train.finetune_config import transformer_freeze_updates

    train, _ = tones
    task = FinetuneTask(FinetuneConfig(train=[str(train)], out=str(tmp_path / "r"), model=SMALL))  # 800, frozen 400
    blank = {"blank_share": 1.0}
    assert not task.health_warnings(blank, 599) and [k for k, _ in task.health_warnings(blank, 600)] == ["all_blank"]
    assert not task.health_warnings({"blank_share": 0.9}, 800)
    recipes = Path(__file__).parents[2] / "src" / "xlsr" / "recipes" / "finetune"
    for path in sorted(recipes.glob("*.yaml")):
        settings = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k != "model"}
        cfg = FinetuneConfig(**settings)
        assert transformer_freeze_updates(cfg) < all_blank_after(transformer_freeze_updates(cfg), cfg.max_updates) \
            < cfg.max_updates, path.name


def test_speed_perturbation_never_leaves_a_label_more_symbols_than_frames(tmp_path, caplog):
    import numpy as np
    import soundfile as sf

    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL})
    frames = cfg.num_frames(16000)
    rows, rng = [], np.random.default_rng(0)
    for k, length in enumerate((frames, frames, 3, 3)):  # the first two labels just fit at speed 1
        sf.write(tmp_path / f"u{k}.wav", (0.1 * rng.standard_normal(16000)).astype("float32"), 16000)
        rows.append({"id": f"u{k}", "audio": f"u{k}.wav", "num_samples": 16000, "lang": "xx",
                     "phones": " ".join(["a", "i"] * length)[: 2 * length - 1]})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = FinetuneTask(FinetuneConfig(train=[str(manifest)], out=str(tmp_path / "r"), augment="speed=1.0:1.2-1.2",
                                       model={**SMALL, "mask_prob": 0.0, "mask_channel_prob": 0.0}))
    assert task.data.filter_reports[str(manifest)].kept == 4
    with caplog.at_level(logging.WARNING):
        batch = next(iter(task.train_batches(0)))
    assert dict(zip(batch.ids, batch.lengths.tolist())) == {"u0": 16000, "u1": 16000, "u2": 13333, "u3": 13333}
    assert "epoch 0: 2 of 4 utterances play at speed 1" in caplog.text
    model = task.build_model()
    need = torch.tensor([ctc_min_frames(batch.labels[b, :n].tolist()) for b, n in enumerate(batch.label_lengths)])
    assert (model.wav2vec2.frame_lengths(batch.lengths) >= need).all()
    assert torch.isfinite(task.ctc_forward(model, batch).loss)
