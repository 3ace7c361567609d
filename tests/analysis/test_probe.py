"""The layer-wise probe on tone "phones": features that carry the labels probe far better than features that
carry none; probe.json layout; the hidden-state convention of the cached features; bad input; determinism."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xlsr.analysis.probe import ProbeSettings, format_summary, probe, score_heads, train_probe_heads
from xlsr.analysis.probe_features import (
    FeatureBatch,
    batch_features,
    compute_features,
    parse_layers,
    read_labeled,
)
from xlsr.cli.main import main
from xlsr.data.audio import normalize_waveform
from xlsr.errors import XlsrError
from xlsr.interop.huggingface import export_hf
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining
from xlsr.text.vocab import Vocabulary
from xlsr.train.linear_probe import zero_heads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

FAST = ProbeSettings(epochs=2, lr=1e-2)


def micro_config(channels: int = 16, **overrides) -> Wav2Vec2Config:
    conv = [(channels, 10, 5)] + [(channels, 3, 2)] * 4 + [(channels, 2, 2)] * 2
    fields = dict(conv_layers=conv, hidden_size=32, num_layers=2,
                  num_heads=2, ffn_dim=64, final_dim=16, codevector_dim=16, num_codevector_groups=2,
                  num_codevectors_per_group=8, conv_pos=16, conv_pos_groups=4, dropout=0.0, attention_dropout=0.0,
                  activation_dropout=0.0, dropout_input=0.0, dropout_features=0.0, layerdrop=0.0)
    fields.update(overrides)
    return Wav2Vec2Config(**fields)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    train = write_tone_corpus(root / "data", "train", 24, seed=1)
    test = write_tone_corpus(root / "data", "test", 8, seed=2)
    torch.manual_seed(0)
    # A random CNN of 64 channels already separates the tones linearly (one of 16 channels does not, nor does
    # the random Transformer's positional convolution, which blurs 16 frames).
    informative = Wav2Vec2ForPreTraining(micro_config(64))
    save_checkpoint(root / "informative", informative)
    blind = Wav2Vec2ForPreTraining(micro_config(64))
    with torch.no_grad():  # a first convolution of zeros: every frame the same whatever the audio
        blind.wav2vec2.feature_encoder.conv_layers[0].conv.weight.zero_()
    save_checkpoint(root / "blind", blind)
    return root, train, test


def test_features_that_carry_the_labels_probe_far_better(setup, one_thread):
    root, train, test = setup
    report = probe([root / "informative", root / "blind"], train, test, root / "out_compare",
                   settings=ProbeSettings(epochs=30, lr=1e-2, batch_frames=200), plot=False, show_progress=False)
    informative, blind = ({r["layer"]: r["per"] for r in m["layers"]} for m in report.summary["models"])
    assert list(informative) == list(blind) == ["cnn", 0, 1, 2]
    assert informative["cnn"] < 0.15, informative
    assert min(blind.values()) > 0.7, blind  # above 0 only by phones a constant output guesses right
    assert informative["cnn"] < min(blind.values()) - 0.5
    # Constant features have no spread; the tones' CNN output spans several directions.
    stats = {r["layer"]: r["effective_dim"] for r in report.summary["models"][1]["layers"]}
    assert stats["cnn"] < 1e-6
    assert report.summary["models"][0]["layers"][0]["effective_dim"] > 1.5


def test_cached_features_follow_the_hidden_state_convention(setup, one_thread):
    root, train, _ = setup
    model = Wav2Vec2ForPreTraining(micro_config(normalize_waveform=True)).eval()
    data = read_labeled(train, "phones", min_samples=400)
    vocab = Vocabulary.build(data.labels, "phones")
    layers = ["cnn", 0, 2]
    items = compute_features(model.wav2vec2, data, vocab, layers, device=torch.device("cpu"),
                             max_batch_samples=3 * 16000)  # padded batches of several lengths
    with torch.no_grad():
        for i, wave in enumerate(data.waveforms):
            assert items[i].ref == data.labels[i] and items[i].label_ids == vocab.encode(data.labels[i])
            x = torch.from_numpy(normalize_waveform(wave))[None]  # as the config asks
            out = model.wav2vec2(x, output_hidden_states=True)
            expected = [out.extract_features[0], out.hidden_states[0][0], out.hidden_states[2][0]]
            for got, want in zip(items[i].features, expected):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert torch.equal(out.hidden_states[2], out.last_hidden_state)  # layer L is the encoder's output
    # Re-packed for the heads: each row holds its utterance's frames and labels, shortest first.
    batches = batch_features(items, max_batch_frames=120)
    rows = [(b, r) for b in batches for r in range(len(b.refs))]
    assert len(batches) > 1 and len(rows) == len(items)
    order = sorted(range(len(items)), key=lambda i: items[i].features[0].shape[0])
    for i, (b, r) in zip(order, rows):
        n = int(b.frame_lengths[r])
        assert b.refs[r] == items[i].ref and b.labels[r, : b.label_lengths[r]].tolist() == items[i].label_ids
        for k in range(3):
            assert torch.equal(b.features[k][r, :n], items[i].features[k])
        assert b.features[0].shape[0] * b.features[0].shape[1] <= 120


def test_probe_json_layout_and_plot(setup, tmp_path, one_thread):
    root, train, test = setup
    report = probe(root / "informative", train, test, tmp_path / "one", layers="cnn,2", settings=FAST, seed=3,
                   show_progress=False)
    written = json.loads((tmp_path / "one" / "probe.json").read_text())
    assert written == report.summary
    assert written["model"] == str(root / "informative") and written["num_layers"] == 2
    assert set(written["stage_seconds"]) == {"features", "heads"} and written["seconds"] > 0
    assert [r["layer"] for r in written["layers"]] == ["cnn", 2]
    for r in written["layers"]:
        assert 0.0 <= r["per"] and r["counts"]["ref_len"] > 0 and r["dim"] in (64, 32)
    assert written["labels"] == "phones" and written["metric"] == "per" and written["seed"] == 3
    assert written["train"]["utterances"] == 24 and written["test"]["utterances"] == 8
    assert 0 < written["train"]["minutes"] < 2 and written["settings"]["epochs"] == 2
    assert (tmp_path / "one" / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["probe.json", "probe.png"]
    assert "cnn" in format_summary(written)


def test_several_models_of_any_format_share_one_report(setup, tmp_path, one_thread):
    root, train, test = setup
    ctc = Wav2Vec2ForCTC(micro_config(num_layers=1), vocab_size=5)
    save_checkpoint(tmp_path / "ctc", ctc, vocab=["<blank>", "<unk>", "a", "i", "u"])
    export_hf(Wav2Vec2ForPreTraining(micro_config(num_layers=3)), tmp_path / "hf")
    report = probe([tmp_path / "ctc", tmp_path / "hf"], train, test, tmp_path / "out", settings=FAST,
                   show_progress=False)
    models = report.summary["models"]
    assert [m["name"] for m in models] == ["ctc", "hf"]
    assert [m["source_format"] for m in models] == ["xlsr", "hf"]
    assert [[r["layer"] for r in m["layers"]] for m in models] == [["cnn", 0, 1], ["cnn", 0, 1, 2, 3]]
    assert "model" not in report.summary and report.files["plot"].is_file()


def test_deterministic_for_a_seed(setup, tmp_path, one_thread):
    root, train, test = setup
    runs = [probe(root / "informative", train, test, tmp_path / f"run{i}", layers="0,1", settings=FAST, seed=5,
                  plot=False, show_progress=False).summary["layers"] for i in range(2)]
    assert runs[0] == runs[1]


def test_chars_give_cer(setup, tmp_path, one_thread):
    root, train, test = setup
    summary = probe(root / "informative", train, test, tmp_path / "chars", layers="cnn", labels="chars",
                    settings=FAST, plot=False, show_progress=False).summary
    assert summary["metric"] == "cer" and summary["vocab_size"] == 6  # blank, <unk>, |, a, i, u
    assert "cer" in summary["layers"][0] and "per" not in summary["layers"][0]


def test_a_heads_error_rate_is_counted_against_the_reference():
    """An identity head on one-hot frames says 'a b'; the reference has 10 phones: 8 deletions of 10, PER 0.8."""
    ref = "a b c d e f g h i j"
    vocab = Vocabulary.build([ref], "phones")
    head = torch.nn.Linear(len(vocab), len(vocab))
    torch.nn.init.eye_(head.weight)
    torch.nn.init.zeros_(head.bias)
    frames = torch.tensor([vocab.index("a"), 0, vocab.index("b")] + [0] * 7)
    batch = FeatureBatch(features=[9.0 * F.one_hot(frames, len(vocab)).float()[None]],
                         frame_lengths=torch.tensor([10]), labels=torch.zeros(1, 1, dtype=torch.long),
                         label_lengths=torch.tensor([1]), refs=[ref])
    (counts,) = score_heads(torch.nn.ModuleList([head]), [batch], vocab, "phone")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.ref_len) == (0, 8, 0, 10)
    assert counts.rate == pytest.approx(0.8)


def test_the_reported_train_loss_is_the_mean_over_the_last_epochs_batches():
    """With a learning rate of 1e-12 the zero heads stay uniform: each batch's loss is CTC of uniform logits."""
    g = torch.Generator().manual_seed(0)
    a = FeatureBatch(features=[torch.randn(2, 20, 8, generator=g)], frame_lengths=torch.tensor([20, 20]),
                     labels=torch.tensor([[2, 3], [3, 2]]), label_lengths=torch.tensor([2, 2]))
    b = FeatureBatch(features=[torch.randn(1, 12, 8, generator=g)], frame_lengths=torch.tensor([12]),
                     labels=torch.tensor([[3, 3, 2]]), label_lengths=torch.tensor([3]))

    def uniform_ctc(batch):
        log_probs = torch.zeros(batch.labels.shape[0], batch.features[0].shape[1], 4).log_softmax(-1)
        return F.ctc_loss(log_probs.transpose(0, 1), batch.labels, batch.frame_lengths, batch.label_lengths).item()

    settings = ProbeSettings(epochs=3, lr=1e-12)
    for batches in ([a], [a, b]):
        (loss,) = train_probe_heads(zero_heads([8], 4), batches, settings, seed=0)
        expected = sum(uniform_ctc(x) for x in batches) / len(batches)
        assert loss == pytest.approx(expected, rel=1e-5)
    assert uniform_ctc(a) != pytest.approx(uniform_ctc(b), rel=1e-2)  # the mean is not either batch's loss


def test_parse_layers():
    assert parse_layers("all") is None
    assert parse_layers("cnn, 0,3,0") == ["cnn", 0, 3]
    for bad in ("x", "-1", ","):
        with pytest.raises(XlsrError, match="--layers"):
            parse_layers(bad)


def _fails(args, capsys, *expected):
    code = main(["probe", *map(str, args)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("xlsr: error: "), err
    for text in expected:
        assert text in err
    return err


def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, capsys):
    root, train, test = setup
    out = tmp_path / "out"
    common = ["--train", train, "--test", test, "--out", out]
    _fails(["--model", root / "informative", *common, "--layers", "0,7"], capsys,
           "has 2 Transformer layers; --layers asked for 7")
    no_phones = tmp_path / "no_phones.jsonl"
    no_phones.write_text("".join(
        json.dumps({k: v for k, v in json.loads(line).items() if k != "phones"} | {"audio": str(root / "data" / "xx" /
                   json.loads(line)["audio"])}) + "\n" for line in train.read_text().splitlines()))
    _fails(["--model", root / "informative", "--train", no_phones, "--test", test, "--out", out], capsys,
           str(no_phones), "no 'phones' field")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _fails(["--model", root / "informative", "--train", train, "--test", empty, "--out", out], capsys,
           str(empty), "empty manifest")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"format": "xlsr", "version": 1, "architecture": "Wav2Vec2ForPreTraining"')
    _fails(["--model", broken, *common], capsys, str(broken))
    _fails(["--model", tmp_path / "missing", *common], capsys, "missing")
    _fails(["--model", root / "informative", *common, "--seed", "-1"], capsys, "--seed: a whole number 0 or more")
    assert not out.exists()


def test_an_interrupted_run_keeps_the_models_it_finished(setup, tmp_path, monkeypatch, one_thread):
    import xlsr.analysis.probe as probe_module

    root, train, test = setup
    finished = []

    class Interrupted(Exception):
        pass

    def probe_model(*args, **kw):  # the second model never finishes
        if finished:
            raise Interrupted
        finished.append(1)
        return original(*args, **kw)

    original = probe_module.probe_model
    monkeypatch.setattr(probe_module, "probe_model", probe_model)
    with pytest.raises(Interrupted):
        probe([root / "informative", root / "blind"], train, test, tmp_path / "out", layers="cnn", settings=FAST,
              show_progress=False)
    written = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert [m["name"] for m in written["models"]] == ["informative"]  # the several-model layout from the start
    assert [r["layer"] for r in written["models"][0]["layers"]] == ["cnn"]
    assert (tmp_path / "out" / "probe.png").is_file()


def test_a_test_set_that_overlaps_train_is_said_and_recorded(setup, tmp_path, caplog, one_thread):
    import logging

    root, train, test = setup
    settings = ProbeSettings(epochs=1, batch_frames=200)
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe"):
        report = probe(root / "informative", train, train, tmp_path / "same", layers="cnn", settings=settings,
                       plot=False, show_progress=False)
    n = len(train.read_text().splitlines())
    assert report.summary["train_test_overlap"] == {"test_utterances_in_train": n, "test_speakers_in_train": 1}
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"{n} of its {n} utterances are also in the train manifest" in said and "known voices" in said
    caplog.clear()
    # the tone corpora's train and test files differ, their one synthetic speaker is shared
    with caplog.at_level(logging.WARNING, logger="xlsr.analysis.probe"):
        report = probe(root / "informative", train, test, tmp_path / "apart", layers="cnn", settings=settings,
                       plot=False, show_progress=False)
    assert report.summary["train_test_overlap"] == {"test_utterances_in_train": 0, "test_speakers_in_train": 1}
    assert "also in the train manifest" not in " ".join(r.getMessage() for r in caplog.records)
