"""CTC fine-tuning (spec §7): a CTC head on a pretrained (or random) encoder, run by the shared Trainer.

The recipe, one mechanism per place:
- vocabulary (train/finetune_data.py): built from the training labels (phones or characters; the union over languages), unless the
  `--init` checkpoint already carries one or `vocab` names a JSON file; saved with every checkpoint;
- model: Wav2Vec2ForCTC with the pretrained encoder's weights (quantizer and projections dropped) and a
  fresh head whose blank logit starts `blank_bias` higher, so CTC begins in its all-blank stage; the CNN is
  frozen throughout, whatever the init (`FinetuneTask.build_model`; the encoder's weights come through
  interop/init_model.py);
- the Transformer is frozen for the first `freeze_ratio` share of the updates (or `freeze_updates`), so that
  only the head trains while it is random (`FinetuneTask.on_update_start`). No setting depends on whether the
  init is pretrained: the resolved RUN/config.yaml is the whole protocol, and two runs with equal configs
  differ only in their init;
- time masks (with the learned mask embedding) and channel masks, LayerDrop, dropouts: `model` overrides
  applied to the encoder's config (the model draws the masks in training mode);
- tri-stage learning rate, Adam (0.9, 0.98), eps 1e-8 (`FinetuneConfig`'s defaults, train/finetune_config.py);
- CTC in fp32, zero_infinity: by default (`ctc_loss: mean`) the mean over per-target-length losses (inside
  Wav2Vec2ForCTC); `ctc_loss: sentence` is fairseq's sentence_avg: each utterance's loss summed, the gradient
  divided by the utterances of the whole update (`FinetuneTask.train_step` returns them as `sample_size`);
- utterances with an empty label, or a label longer than its frame count, are filtered and counted
  (text/labels.py; `read_finetune_data` in train/finetune_data.py), in the dev manifests too, and a dev set
  left with nothing to validate on, or with more unreadable audio files (headers) than max_bad_share, is an error
  before training; training skips utterances longer than
  max_tokens (or max_sample_size), validation keeps them (alone in a batch when longer than max_tokens) up to
  4 × max_tokens (finetune_data.py: DEV_LENGTH_FACTOR; a longer one, an uncut recording, is left out with a warning); a
  speed perturbation that would leave a label more symbols than frames, or an utterance longer than that limit,
  is not applied (data/batching.py); each epoch counts its own bad files against max_bad_share;
- with a frozen CNN its output never changes, so each utterance's CNN output is computed once and kept in
  CPU memory (train/feature_cache.py, `cache_features`); later epochs and validations start at feature_norm;
- dev error rate (PER or CER, word boundaries excluded) per language every `valid_every`
  updates; `checkpoints/best` keeps the lowest.

Defaults follow the shape of fairseq's low-resource recipes (vox_10m/1h/10h: CNN frozen by feature_grad_mult
0, Transformer frozen for the first 10k of 13k-20k updates, tri-stage peak lr 1e-4..3e-4, 1/50-1/17 of the
pretraining peak), scaled to the tiny model on a few minutes of audio on a CPU: 800 updates of 10 s batches,
the Transformer frozen for the first half (it unfreezes where the tri-stage decay begins, as in vox_10h),
peak lr 5e-4 (1/4 of the tiny recipe's pretraining peak: a run 16x shorter than fairseq's needs a larger
share). They were set by this reasoning, not tuned on a test set; the demo's dev set only served to check that
the runs leave CTC's all-blank stage (docs/demo/investigation.md, third round). The paper's own settings for
real models are in fairseq's recipes (also mask_prob 0.65-0.75, channel prob 0.25 over 64 channels, LayerDrop
0.1). To train a model from scratch in every layer: freeze_feature_encoder false, freeze_ratio 0.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from xlsr.config import config_to_dict
from xlsr.data.augment import parse_augment
from xlsr.data.batching import finetune_loader, record_decoding
from xlsr.data.decoder_pool import setting_timeout
from xlsr.data.decoding_record import DecodingRecord
from xlsr.data.shard_loader import shard_finetune_loader
from xlsr.data.utterance_index import UtteranceIndex
from xlsr.errors import XlsrError
from xlsr.interop.init_model import apply_overrides, load_encoder, load_init
from xlsr.interop.load import read_checkpoint_config
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2ForCTC
from xlsr.model.ctc import ctc_best_path, ctc_loss
from xlsr.text.labels import LABEL_FIELD
from xlsr.text.metrics import edit_ops
from xlsr.train.checkpoint import load_trainer_state
from xlsr.train.distributed import unwrap
from xlsr.train.feature_cache import FeatureCache, cache_blocker
from xlsr.train.finetune_config import FinetuneConfig, transformer_freeze_updates
from xlsr.train.finetune_data import read_finetune_data
from xlsr.train.language_adapters import check_adapter_training, export_run_adapter, train_adapters_only
from xlsr.train.monitor import loader_totals, read_log
from xlsr.train.release_memory import release_memory
from xlsr.train.run_folder import check_resumable, resume_checkpoint
from xlsr.train.shard_finetune import ShardLabeler
from xlsr.train.task import Task
from xlsr.train.trainer import Trainer

log = logging.getLogger(__name__)


class FinetuneTask(Task):
    """CTC fine-tuning for the generic Trainer."""

    best_lower_is_better = True
    validation_data_keys = ("dev", "valid_max_batches")
    summed_logs = ("sample_size",)

    def __init__(self, cfg: FinetuneConfig, feature_caches: dict[str, FeatureCache] | None = None):
        """`feature_caches` ({"train"/"dev": FeatureCache}) reuses the CNN output of an earlier run from the same
        init and data (e.g. another seed); a cache filled by another CNN is refused when the model is built (a
        resumed run's, once its checkpoint's weights are loaded)."""
        if not cfg.train:
            raise XlsrError("train: give at least one training manifest (--train)")
        if cfg.labels not in LABEL_FIELD:
            raise XlsrError(f"labels: {cfg.labels!r} is not one of phones, chars")
        self.cfg = cfg
        self.info = None
        self.best_metric = "per" if cfg.labels == "phones" else "cer"
        self.adapters_only = cfg.train_only == "adapters"  # the base never trains: no CNN, no freeze schedule
        # a resumed run reads no weights of --init: its own checkpoint's replace them
        self.init = load_init(cfg.init, cfg.preset, cfg.target_lang, allow_new_language=self.adapters_only,
                              resume_from=resume_checkpoint(cfg.out))
        if self.adapters_only:
            check_adapter_training(self.init, cfg.target_lang)
        self.model_config = apply_overrides(self.init.config, dict(cfg.model), from_checkpoint=self.init.pretrained)
        if cfg.target_lang and not self.model_config.adapter_attn_dim:
            # a checkpoint without adapters is refused as it loads; a random model's would be named for nothing
            raise XlsrError(f"target_lang: {cfg.target_lang!r} picks a language of an MMS --init with per-language "
                            f"adapters; --init {cfg.init} has none (and model.adapter_attn_dim is not set)")
        # The same for every init: what RUN/config.yaml says is what the run did, pretrained or not.
        # Adapter training (MMS) keeps the whole base fixed, so neither freeze applies there.
        self.freeze_cnn = bool(cfg.freeze_feature_encoder) or self.adapters_only
        self.freeze_updates = 0 if self.adapters_only else transformer_freeze_updates(cfg)
        self.trainable_line = ""
        self.has_unused_parameters = self.freeze_updates > 0  # the frozen Transformer has no gradient then
        if self.freeze_cnn:
            self.model_config.feature_grad_mult = 0.0
        elif self.model_config.feature_grad_mult == 0.0:  # not given (refused when given 0: FinetuneConfig)
            # An --init fine-tuned with its CNN frozen records 0 (every fairseq fine-tuned file, xlsr's own runs):
            # kept, the CNN that --freeze-feature-encoder false asks to train would get no gradient, unsaid.
            if self._started_cnn_gradient() == 0.0:
                # a run started by an xlsr that kept the 0: its checkpoint holds a model whose CNN never trained, and
                # what trains is fixed when a run starts (run_folder.STARTED_WITH_KEYS), so it resumes as it started
                log.warning("%s: this run was started with feature_grad_mult 0, which --init %s records (an earlier "
                            "xlsr kept it, leaving the CNN frozen although --freeze-feature-encoder false); it "
                            "resumes so; a run into a new --out trains the CNN", cfg.out, cfg.init)
            else:
                self.model_config.feature_grad_mult = 1.0
                log.warning("--init %s records feature_grad_mult 0 (its CNN was frozen when it was fine-tuned); "
                            "--freeze-feature-encoder false trains the CNN with gradient scale 1.0 (give "
                            "--model.feature_grad_mult to choose another)", cfg.init)
        self.data = read_finetune_data(cfg, self.init, self.model_config)
        self.vocab = self.data.vocab
        self._train_loader = None
        self._loader_state: dict | None = None  # a shard stream's, from the checkpoint, until the loader exists
        self.feature_caches = self._feature_caches(feature_caches or {})
        self._unbound_encoder: nn.Module | None = None  # a resumed run's, until its own weights are loaded
        self.boundary_id = self.vocab.word_boundary_id
        self.decoding_record: DecodingRecord | None = None  # set up with the rank (setup)
        # built now, not at the first validation: a dev set that cannot be validated fails before training
        self._dev_loaders = {lang: self._loader(utts, shuffle=False) for lang, utts in sorted(self.data.dev_utts.items())}

    def _started_cnn_gradient(self) -> float | None:
        """The feature_grad_mult of the checkpoint a resumed run resumes from; None for a run that starts."""
        if self.init.resumed_from is None:
            return None
        return (read_checkpoint_config(self.init.resumed_from).get("model") or {}).get("feature_grad_mult")

    def _feature_caches(self, given: dict[str, FeatureCache]) -> dict[str, FeatureCache]:
        """One cache for the training utterances and one for the dev sets (new, or `given`), where a cache is exact."""
        dev = [u for utts in self.data.dev_utts.values() for u in utts]
        caches = {}
        for name, utts in (("train", self.data.train_utts), ("dev", dev)):
            blocker = cache_blocker(self.cfg.cache_features, self.freeze_cnn, utts) if utts else "no data"
            if name == "train" and blocker is None and parse_augment(self.cfg.augment).enabled:
                blocker = "augment is on (each epoch hears other audio)"
            if blocker is None:
                caches[name] = given[name] if name in given else FeatureCache()
            elif self.freeze_cnn and self.cfg.cache_features and utts:
                log.info("%s features are not cached: %s", name, blocker)
        return caches

    # --- Task interface ------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """Wav2Vec2ForCTC with the init encoder (and head, when its vocabulary is reused); CNN frozen. The first
        build takes `--init`'s weights, and they are let go: a later one (FSDP's saving copy) starts random."""
        model = Wav2Vec2ForCTC(self.model_config, len(self.vocab.tokens))
        if self.init.resumed_from is not None:
            check_resumable(self.cfg.out, self.init.resumed_from)  # the Trainer loads the run's own weights
        if self.init.model is not None:
            load_encoder(model.wav2vec2, self.init)
        if self.adapters_only:
            trainable, total = train_adapters_only(model, new_language=self.init.new_language)
            self.trainable_line = (f"training only the adapters and CTC head of {self.cfg.target_lang!r}"
                                   f"{self._language_note()}: {trainable:,} of {total:,} parameters")
        if self.data.keep_head and self.init.ctc_head is not None:
            model.lm_head.load_state_dict(self.init.ctc_head.state_dict())
        else:
            start_blank_dominated(model.lm_head, self.cfg.blank_bias)
        self.init.release_weights()  # the run's model holds them; a later build (FSDP's saving copy) gets the run's
        if self.freeze_cnn:
            model.freeze_feature_encoder()
        if self.init.resumed_from is None:
            self._bind_caches(model.wav2vec2)
        elif self.feature_caches:  # its CNN is random until the Trainer loads the run's checkpoint: bound then
            self._unbound_encoder = model.wav2vec2
        return model

    def _language_note(self) -> str:
        """Where the trained language's adapters start: fresh (a new language) or the `--init` checkpoint's own, which
        the run continues (RUN/adapter/ then replaces that language's in a directory it is copied into)."""
        if self.init.new_language:
            return " (a new language)"
        if self.init.resumed_from is not None:
            return ""  # the run's own checkpoint holds them
        head = "" if self.data.keep_head else "; a new head"
        return f" (--init has this language: its adapters{'' if head else ' and head'} continue training{head})"

    def _bind_caches(self, encoder: nn.Module) -> None:
        """Tie the feature caches to `encoder`'s CNN (XlsrError when one holds another CNN's output)."""
        for cache in self.feature_caches.values():
            cache.bind(encoder, self.model_config.normalize_waveform)

    def setup(self, info) -> None:
        self.info = info
        # with num_workers 0 (the default) training and dev data are decoded in this process
        self.decoding_record = (DecodingRecord(self.cfg.out, info.rank, info.world_size,
                                               timeout=setting_timeout(self.cfg.decode_timeout))
                                if self.cfg.out else None)
        if info.world_size > 1 and self.cfg.distributed == "fsdp":
            self.feature_caches = {}  # sharded CNN weights cannot run outside the wrapped forward
        for loader in self._dev_loaders.values():
            record_decoding(loader, self.decoding_record)
            self._skip_cached_audio(loader, "dev")

    def ctc_forward(self, model: nn.Module, batch, split: str = "train", with_loss: bool = True):
        """The model on a batch: from cached CNN output when this split has a cache, else from the waveforms.
        With `with_loss` the output carries the model's (mean) CTC loss."""
        labels, label_lengths = (batch.labels, batch.label_lengths) if with_loss else (None, None)
        cache = self.feature_caches.get(split)
        if cache is None:
            return model(batch.waveforms, batch.lengths, labels, label_lengths)
        features, frames = cache.batch_features(unwrap(model).wav2vec2, batch.waveforms, batch.lengths, batch.ids)
        return model(labels=labels, label_lengths=label_lengths, features=features, frame_lengths=frames)

    def _rank(self) -> tuple[int, int]:
        return (self.info.rank, self.info.world_size) if self.info is not None else (0, 1)

    def _loader(self, utts: UtteranceIndex, shuffle: bool):
        cfg = self.cfg
        rank, world = self._rank() if shuffle else (0, 1)
        if shuffle and self.data.shards is not None:
            return record_decoding(shard_finetune_loader(
                *self.data.shards, ShardLabeler(self.vocab, cfg.labels, self.model_config.conv_layers),
                max_tokens=cfg.max_tokens, max_sample_size=cfg.max_sample_size, seed=cfg.seed, rank=rank,
                world_size=world, num_workers=cfg.num_workers, normalize=self.model_config.normalize_waveform,
                max_bad_share=cfg.max_bad_share, decode_timeout=setting_timeout(cfg.decode_timeout)),
                self.decoding_record)
        loader = finetune_loader(utts, self.vocab, max_tokens=cfg.max_tokens, shuffle=shuffle,
                                 seed=cfg.seed, normalize=self.model_config.normalize_waveform,
                                 label_field=cfg.labels, rank=rank, world_size=world,
                                 num_workers=cfg.num_workers, max_bad_share=cfg.max_bad_share,
                                 decode_timeout=setting_timeout(cfg.decode_timeout), max_sample_size=cfg.max_sample_size,
                                 oov="unk",
                                 augment=parse_augment(cfg.augment) if shuffle else None,  # training data only
                                 num_frames=self.model_config.num_frames,
                                 keep_long=not shuffle)  # validation has no gradient: it keeps what the data kept
        if shuffle:  # the dev loaders, built before setup, get theirs there
            self._skip_cached_audio(loader, "train")
        return record_decoding(loader, self.decoding_record)

    def _skip_cached_audio(self, loader, split: str) -> None:
        """Have `loader` not decode the utterances whose CNN output `split`'s cache holds (the cache's lengths)."""
        cache = self.feature_caches.get(split)
        loader.dataset.cached_lengths = cache.lengths if cache is not None else None

    def train_batches(self, epoch: int, skip: int = 0):
        if self._train_loader is None:
            self._train_loader = self._loader(self.data.train_utts, shuffle=True)
        loader = self._train_loader
        if self.data.shards is not None:  # the loader keeps its own (epoch, position) and stream state
            if self._loader_state is not None:
                loader.load_state_dict(self._loader_state)
                self._loader_state = None
            if skip and loader.epoch == epoch and skip >= len(loader):
                return iter(())  # the checkpoint was taken right at the end of this epoch
            loader.set_epoch(epoch)
            return iter(loader)
        saved, self._loader_state = self._loader_state, None
        if saved is not None:  # exact: its position counts planned batches that yielded nothing too
            loader.load_state_dict(saved)
        if saved is None or int(saved["epoch"]) != epoch:
            # a new epoch (which counts its own bad files against max_bad_share), or a checkpoint of an earlier
            # version: replanned from the Trainer's batch count
            loader.seek(epoch, skip)
        return iter(loader)

    def describe(self) -> str:
        return self.trainable_line

    def data_totals(self) -> dict[str, int]:
        return loader_totals(self._train_loader) if self._train_loader is not None else {}

    def on_update_start(self, model: nn.Module, update: int) -> dict:
        """The Transformer trains only after `freeze_updates` (never with train_only adapters)."""
        if self.adapters_only:
            return {}  # requires_grad was set once in build_model
        frozen = update < self.freeze_updates
        model.set_encoder_trainable(not frozen, keep_cnn_frozen=self.freeze_cnn)
        return {"encoder_frozen": float(frozen)}

    def train_step(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict]:
        """`ctc_loss` mean: the model's mean loss (one unit per micro-batch). sentence: the sum of the utterances'
        losses with `sample_size` = their count, so the Trainer divides by the utterances of the whole update."""
        sentence = self.cfg.ctc_loss == "sentence"
        out = self.ctc_forward(model, batch, "train", with_loss=not sentence)
        with torch.no_grad():
            pred = out.logits.argmax(dim=-1)  # (B, T)
            valid = torch.arange(pred.shape[1], device=pred.device)[None, :] < out.frame_lengths[:, None]
            blank_share = ((pred == 0) & valid).sum() / valid.sum().clamp(min=1)
        if not sentence:
            return out.loss, {"loss": out.loss.detach(), "blank_share": blank_share}
        per_utterance = ctc_loss(out.logits, out.frame_lengths, batch.labels, batch.label_lengths, reduction="none")
        n = per_utterance.shape[0]
        loss = per_utterance.sum()
        with torch.no_grad():  # logged as means over utterances, which the Trainer weighs by sample_size
            per_label = per_utterance / batch.label_lengths.to(per_utterance.device).clamp(min=1)
            return loss, {"loss": per_label.mean(), "sentence_loss": loss / n, "blank_share": blank_share,
                          "sample_size": float(n)}

    def valid_sets(self) -> dict:
        return {lang: self._dev_batches(lang, loader) for lang, loader in self._dev_loaders.items()}

    def _dev_batches(self, lang: str, loader):
        """The batches of one dev language, from its first (a validation that stopped a set early, as FSDP's does at
        the shortest rank's count, left it part-way); a data error (too many bad files) names the dev manifests."""
        loader.seek(0, 0)
        try:
            yield from loader
        except XlsrError as exc:
            raise XlsrError(f"dev set {lang!r} ({', '.join(self.data.dev_manifests[lang])}): {exc}") from None

    def valid_step(self, model: nn.Module, batch) -> dict:
        """CTC loss and the greedy unit error rate (PER/CER, word boundaries excluded) of one dev batch; a reference
        symbol outside the vocabulary (`<unk>` in the label) is an error.

        The loss is the mean one (nats per label, as the train log's `loss`) whatever `ctc_loss` trains with."""
        out = self.ctc_forward(model, batch, "dev")
        hyps = ctc_best_path(out.logits, out.frame_lengths)
        errors = ref_len = 0
        drop = {self.boundary_id} if self.boundary_id is not None else set()
        unk = self.vocab.unk_id
        for row, hyp in enumerate(hyps):
            ref = batch.labels[row, : int(batch.label_lengths[row])].tolist()
            # a symbol the vocabulary lacks is an error whatever the model emits, <unk> too, as xlsr evaluate
            # scores it against the reference's own symbol
            ref = [-1 if t == unk else t for t in ref if t not in drop]
            ops = edit_ops(ref, [t for t in hyp if t not in drop])
            errors += ops.substitutions + ops.deletions + ops.insertions
            ref_len += ops.ref_len
        return {"loss": float(out.loss), self.best_metric: errors / max(ref_len, 1), "sample_size": max(ref_len, 1)}

    def batch_size_option(self) -> str:
        return f"--max-tokens (now {self.cfg.max_tokens})"

    def reports(self) -> dict[str, dict]:
        return {"data_report.json": self.data.report()}

    def validation_fingerprint(self) -> str:
        digest = hashlib.sha256()
        field = LABEL_FIELD[self.cfg.labels]
        for lang, utts in sorted(self.data.dev_utts.items()):
            for i, label in enumerate(utts.labels(field)):
                digest.update(f"{lang}\t{utts.utterance_id(i)}\t{int(utts.num_samples[i])}\t{label}\n"
                              .encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:16]

    def health_warnings(self, logs: dict, update: int) -> list:
        # Pitfall §11.4: a long all-blank phase is normal at first; long after the freeze it is not.
        share = logs.get("blank_share")
        if share is not None and share > 0.995 and update >= all_blank_after(self.freeze_updates, self.cfg.max_updates):
            return [("all_blank", f"the model still predicts only blanks after {update} updates; expected early "
                                  f"on, otherwise raise lr (now {self.cfg.lr:g}) or max_updates")]
        return []

    def state_dict(self) -> dict:
        """The training loader's position: a shard stream's state, or a manifest epoch's planned-batch position and
        bad-file counts (the Trainer's batch count alone would miss batches whose files all failed)."""
        return {"loader": self._train_loader.state_dict() if self._train_loader is not None else self._loader_state}

    def load_state_dict(self, state: dict) -> None:
        if state.get("loader") is not None:
            self._loader_state = state["loader"]
        if self._unbound_encoder is not None:  # the Trainer loaded the run's weights before its task state
            self._bind_caches(self._unbound_encoder)
            self._unbound_encoder = None

    def on_fit_end(self, run_dir: Path) -> None:
        if self.adapters_only:
            export_run_adapter(run_dir, self.cfg.target_lang)  # RUN/adapter/, for transformers' load_adapter

    def save_model(self, directory: Path, model: nn.Module) -> None:
        save_checkpoint(directory, model, vocab=self.vocab.tokens,
                        metadata={"task": "finetune", "labels": self.cfg.labels, "init": self.init.source,
                                  **({"target_lang": self.cfg.target_lang} if self.cfg.target_lang else {})})


def all_blank_after(freeze_updates: int, max_updates: int) -> int:
    """The update from which a model that predicts only blanks gets a warning: a while after the Transformer
    unfreezes (a quarter of the run, at least 200 updates), but always before the run ends."""
    return max(0, min(freeze_updates + max(200, max_updates // 4), max_updates - 1))


@torch.no_grad()
def start_blank_dominated(head: nn.Linear, blank_bias: float) -> None:
    """Add `blank_bias` to the blank's (id 0) bias of a fresh CTC head, so that its first outputs are mostly blanks.

    CTC training normally passes through an all-blank stage before symbols appear at their frames. A head that
    starts on symbols instead can settle, on little data, in a blank-free path that memorizes the training set.
    On unit-variance features PyTorch's Linear init gives logits of std ~0.58 whatever the width, so one offset
    suits every model size.
    """
    head.bias[0] += blank_bias


def best_dev_summary(run_dir: str | Path, labels: str) -> str:
    """What RUN/checkpoints/best holds: its update and the dev error rate logged there, over all dev languages and,
    with several, per language ('' when the run has no best checkpoint yet)."""
    run_dir = Path(run_dir)
    best = run_dir / "checkpoints" / "best"
    if not best.is_dir():
        return ""
    update = load_trainer_state(best)["update"]
    metric = "per" if labels == "phones" else "cer"
    # split -> metric of the last validation at `update`: its valid_LANG records, then the pooled `valid` one (a re-run
    # after a crash may have validated that update again, on other dev sets)
    logged, pending = {}, {}
    if (run_dir / "log.jsonl").is_file():
        for record in read_log(run_dir / "log.jsonl"):
            split = record.get("split")
            if record.get("update") != update or not isinstance(split, str) or not split.startswith("valid") \
                    or not isinstance(record.get(metric), int | float):
                continue
            pending[split] = record[metric]
            if split == "valid":
                logged, pending = pending, {}
    line = f"checkpoints/best: update {update}"
    if "valid" not in logged:
        return line
    line += f", dev {metric.upper()} {100 * logged['valid']:.2f}%"
    langs = sorted(split.removeprefix("valid_") for split in logged if split != "valid")
    if len(langs) > 1:
        line += " (" + ", ".join(f"{lang} {100 * logged['valid_' + lang]:.2f}%" for lang in langs) + ")"
    return line


def finetune(cfg: FinetuneConfig, feature_caches: dict[str, FeatureCache] | None = None) -> Path:
    """Fine-tune with CTC into `cfg.out`; re-running on the same folder resumes. Returns the run folder.

    `feature_caches`: see FinetuneTask; pass the same dict to runs from one init (it is filled in place)."""
    if not cfg.out:
        raise XlsrError("out: give a run folder (--out RUN)")
    def make_task() -> FinetuneTask:  # called once the ranks are connected (Trainer.fit)
        task = FinetuneTask(cfg, feature_caches)
        if feature_caches is not None:
            feature_caches.update(task.feature_caches)  # the caller's dict now holds what this run fills
        return task

    trainer = Trainer(cfg.trainer_config(), make_task, resolved_config=config_to_dict(cfg))
    run_dir = trainer.fit()
    del trainer  # the model and optimizer; the caller's feature_caches stay
    release_memory()
    return run_dir
