"""`analyze` end to end on a tiny random pretraining model and a generated 3-language corpus."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.analysis import analyze
from xlsr.analysis.run import language_families
from xlsr.analysis.selection import select_clips
from xlsr.cli.main import main
from xlsr.data.audio import load_audio
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC, Wav2Vec2ForPreTraining

SR = 16000
V = 8  # codevectors per group: 64 possible codewords


def tiny_config() -> Wav2Vec2Config:
    return Wav2Vec2Config(
        conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, hidden_size=32, num_layers=1,
        num_heads=2, ffn_dim=64, final_dim=16, codevector_dim=16, num_codevector_groups=2,
        num_codevectors_per_group=V, conv_pos=16, conv_pos_groups=4,
    )


def write_language(root, lang, seconds, seed):
    """A few utterances of a language-specific mix of tones and noise, and their train.jsonl."""
    rng = np.random.default_rng(seed)
    folder = root / lang
    folder.mkdir(parents=True)
    utts = []
    for i, dur in enumerate(seconds):
        t = np.arange(int(dur * SR)) / SR
        x = 0.3 * np.sin(2 * np.pi * (150 + 200 * seed) * t) + (0.05 + 0.1 * seed) * rng.standard_normal(t.size)
        path = folder / f"{lang}_{i}.wav"
        sf.write(path, x.astype(np.float32), SR)
        utts.append(Utterance(audio=str(path), num_samples=t.size, lang=lang, speaker="s0", id=f"{lang}_{i}"))
    write_manifest(folder / "train.jsonl", utts)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("analysis")
    data = root / "data"
    for seed, lang in enumerate(["it", "es", "de"]):
        write_language(data, lang, [0.6, 0.5, 0.7 + 0.2 * seed], seed)
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(tiny_config())
    save_checkpoint(root / "pretrained", model)
    return root, data, model


def test_analysis_end_to_end(setup, tmp_path):
    root, data, model = setup
    report = analyze(root / "pretrained", data, tmp_path / "out", seconds_per_lang=1.5, show_progress=False)
    s = report.summary
    assert s["langs"] == ["de", "es", "it"]
    assert s["num_codewords"] == V * V
    # Same audio per language, and every language's distribution sums to 1.
    for lang in s["langs"]:  # a leftover shorter than the receptive field (400 samples) is dropped
        assert 1.5 - 400 / SR < s["per_language"][lang]["seconds"] <= 1.5
    np.testing.assert_allclose(report.counts.counts.sum(axis=1) / report.counts.frames, 1.0)
    frames = [s["per_language"][lang]["frames"] for lang in s["langs"]]
    assert max(frames) - min(frames) <= 3  # equal seconds: frame counts differ only by cropping edges
    # A language is most similar to itself.
    jsd = np.array(s["similarity"]["js_distance"])
    cos = np.array(s["similarity"]["cosine"])
    for i in range(3):
        assert jsd[i, i] == pytest.approx(0.0) and jsd[i].argmin() == i
        assert cos[i, i] == pytest.approx(1.0) and cos[i].argmax() == i
    assert np.array(s["pca"]["coords"]["it"]).shape == (2,)
    assert s["per_language"]["it"]["family"] == "Romance"
    assert sum(s["sharing"]["histogram"].values()) == s["codewords_used"]
    # Files: the JSON round-trips, the counts file agrees with it, the four plots exist.
    on_disk = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert on_disk["per_language"] == s["per_language"]
    npz = np.load(tmp_path / "out" / "codeword_counts.npz")
    assert npz["counts"].sum(axis=1).tolist() == frames
    for name in ("pca.png", "dendrogram.png", "similarity.png", "sharing.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_counts_match_the_quantizer_run_directly(setup, tmp_path):
    root, data, model = setup
    report = analyze(root / "pretrained", data, tmp_path / "out", langs=["it", "de"], seconds_per_lang=1.0,
                     seed=5, plots=False, show_progress=False)
    model.eval()
    for row, lang in enumerate(report.counts.langs):
        utts = read_manifest(data / lang / "train.jsonl")
        ids = []
        for clip in select_clips(utts, 1.0, seed=5):
            x = torch.from_numpy(load_audio(clip.utterance.audio)[: clip.num_samples])[None]
            with torch.no_grad():
                codes, _ = model.quantize(x, torch.tensor([x.shape[1]]))
            ids.append(codes[0, :, 0] * V + codes[0, :, 1])  # i1·V + i2 (spec §3)
        expected = np.bincount(torch.cat(ids).numpy(), minlength=V * V)
        got = np.zeros(V * V, dtype=np.int64)
        got[report.counts.codewords] = report.counts.counts[row]
        np.testing.assert_array_equal(got, expected)
    assert report.counts.langs == ["it", "de"]
    assert not (tmp_path / "out" / "pca.png").exists()


@pytest.mark.parametrize("max_chunk_samples", [30 * SR, 4000])  # whole clips; clips in pieces of 0.25 s
def test_group_norm_batches_equal_one_clip_at_a_time(setup, monkeypatch, max_chunk_samples):
    from xlsr.analysis.extract import extract_codeword_counts

    root, data, model = setup
    assert model.config.extractor_mode == "group_norm"  # wav2vec 2.0 Base's CNN
    utts = {lang: read_manifest(data / lang / "train.jsonl") for lang in ["it", "de"]}
    batches = []
    quantize = model.quantize

    def recorded(waveforms, lengths):
        batches.append(lengths.tolist())
        return quantize(waveforms, lengths)

    monkeypatch.setattr(model, "quantize", recorded)
    kw = dict(seed=2, num_codevectors_per_group=V, normalize=False, device=torch.device("cpu"),
              max_chunk_samples=max_chunk_samples, show_progress=False)
    batched, batched_clips = extract_codeword_counts(model, utts, 1.5, **kw)
    assert len(batches) == 2 and all(len(set(b)) > 1 for b in batches)  # one padded batch per language
    batches.clear()
    single, single_clips = extract_codeword_counts(model, utts, 1.5, max_batch_samples=1, **kw)
    assert all(len(b) == 1 for b in batches) and len(batches) >= sum(len(c) for c in single_clips.values())
    assert batched_clips == single_clips  # the same audio per language
    for lang in utts:
        assert batched[lang][1].sum() > 50
        for got, want in zip(batched[lang], single[lang]):  # the same codewords, as often
            np.testing.assert_array_equal(got, want)


def test_default_amount_is_the_smallest_language(setup, tmp_path):
    root, data, _ = setup
    report = analyze(root / "pretrained", data, tmp_path / "out", plots=False, show_progress=False)
    smallest = min(sum(u.num_samples for u in read_manifest(data / lang / "train.jsonl")) for lang in ["it", "es", "de"])
    assert report.summary["seconds_per_lang"] == pytest.approx(smallest / SR)


def test_ctc_checkpoint_is_refused(setup, tmp_path):
    root, data, _ = setup
    save_checkpoint(tmp_path / "ctc", Wav2Vec2ForCTC(tiny_config(), 5), vocab=["<blank>", "<unk>", "|", "a", "b"])
    with pytest.raises(XlsrError, match="no quantizer.*pretraining checkpoint") as info:
        analyze(tmp_path / "ctc", data, tmp_path / "out", show_progress=False)
    assert "\n" not in str(info.value)


def test_one_language_is_refused(setup, tmp_path):
    root, _, _ = setup
    write_language(tmp_path / "one", "it", [0.5], 0)
    with pytest.raises(XlsrError, match="at least 2 languages.*found only it"):
        analyze(root / "pretrained", tmp_path / "one", tmp_path / "out", show_progress=False)
    with pytest.raises(XlsrError, match="at least 2 languages"):
        analyze(root / "pretrained", root / "data", tmp_path / "out", langs=["es"], show_progress=False)


def test_unknown_language_is_refused(setup, tmp_path):
    root, data, _ = setup
    with pytest.raises(XlsrError, match="no train.jsonl manifest for language.*xx"):
        analyze(root / "pretrained", data, tmp_path / "out", langs=["it", "xx"], show_progress=False)


def test_too_little_audio_is_refused(setup, tmp_path):
    root, data, _ = setup
    with pytest.raises(XlsrError, match=r"it/train.jsonl: language 'it' has 1\.8 s of audio but .* needs 60\.0 s"):
        analyze(root / "pretrained", data, tmp_path / "out", seconds_per_lang=60, show_progress=False)


def test_cli_writes_the_analysis_and_reports_bad_input(setup, tmp_path, capsys):
    root, data, _ = setup
    out = tmp_path / "cli"
    code = main(["analyze", "--model", str(root / "pretrained"), "--data", str(data), "--out", str(out),
                 "--seconds-per-lang", "1", "--langs", "it", "es", "--no-plots"])
    printed = capsys.readouterr().out
    assert code == 0
    assert json.loads((out / "analysis.json").read_text())["langs"] == ["it", "es"]
    assert "it" in printed and "nearest" in printed
    code = main(["analyze", "--model", str(root / "pretrained"), "--data", str(data), "--out", str(out),
                 "--seconds-per-lang", "99"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("xlsr: error: ") and err.count("\n") == 1 and "99.0 s" in err


def test_families_come_from_the_language_table():
    fam = language_families(["it", "de", "zh-CN", "xx"], overrides={"xx": "Isolate"})
    assert fam == {"it": "Romance", "de": "Germanic", "zh-CN": "Sino-Tibetan", "xx": "Isolate"}
    assert language_families(["qq"])["qq"] == "unknown"


def test_hugging_face_export_gives_the_same_counts(setup, tmp_path):
    from xlsr.interop.huggingface import export_hf

    root, data, model = setup
    export_hf(model, tmp_path / "hf")
    native = analyze(root / "pretrained", data, tmp_path / "a", seconds_per_lang=1.0, plots=False, show_progress=False)
    hf = analyze(tmp_path / "hf", data, tmp_path / "b", seconds_per_lang=1.0, plots=False, show_progress=False)
    assert hf.summary["source_format"] == "hf"
    np.testing.assert_array_equal(hf.counts.codewords, native.counts.codewords)
    np.testing.assert_array_equal(hf.counts.counts, native.counts.counts)


def test_unreadable_clip_is_replaced_and_a_shortfall_refused(setup, tmp_path, caplog):
    import shutil

    root, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for lang in ("it", "es", "de"):  # the manifests name absolute paths: point them at the copy
        utts = read_manifest(copy / lang / "train.jsonl")
        for u in utts:
            u.audio = str(copy / lang / (u.id + ".wav"))
        write_manifest(copy / lang / "train.jsonl", utts)
    full = analyze(root / "pretrained", copy, tmp_path / "full", seconds_per_lang=1.0, plots=False,
                   show_progress=False)
    chosen = [c.utterance.id for c in select_clips(read_manifest(copy / "es" / "train.jsonl"), 1.0, seed=0)]
    (copy / "es" / f"{chosen[0]}.wav").write_bytes(b"RIFF broken")
    report = analyze(root / "pretrained", copy, tmp_path / "out", seconds_per_lang=1.0, plots=False,
                     show_progress=False)
    assert f"{chosen[0]}.wav: not a readable audio file" in caplog.text
    es = report.summary["per_language"]["es"]
    assert es["seconds"] == full.summary["per_language"]["es"]["seconds"] == pytest.approx(1.0)  # topped up
    assert es["utterances"] == 2  # the clips read: the other two (none holds 1 s alone)
    (copy / "es" / f"{chosen[1]}.wav").write_bytes(b"RIFF broken")  # now es holds too little readable audio
    with pytest.raises(XlsrError) as info:
        analyze(root / "pretrained", copy, tmp_path / "out2", seconds_per_lang=1.0, plots=False, show_progress=False)
    message = str(info.value)
    assert "\n" not in message and "language 'es': only" in message and "needs 1.0 s" in message
    assert not (tmp_path / "out2").exists()


def test_utterances_too_short_for_a_frame_do_not_count(setup, tmp_path):
    root, _, _ = setup
    data = tmp_path / "data"
    write_language(data, "it", [1.0, 1.0], 0)
    write_language(data, "es", [1.0, 1.0], 1)
    write_language(data, "de", [1.0] + [0.02] * 20, 2)  # 1 s that gives frames, 20 x 320 samples that cannot
    report = analyze(root / "pretrained", data, tmp_path / "out", plots=False, show_progress=False)
    s = report.summary
    assert s["seconds_per_lang"] == 1.0 and s["per_language"]["de"]["available_seconds"] == 1.0
    assert [s["per_language"][lang]["seconds"] for lang in s["langs"]] == [1.0, 1.0, 1.0]
    with pytest.raises(XlsrError, match=r"language 'de' has 1.0 s of audio .* needs 1.4 s"):
        analyze(root / "pretrained", data, tmp_path / "out", seconds_per_lang=1.4, plots=False, show_progress=False)


def test_an_interrupted_rewrite_keeps_the_previous_outputs(setup, tmp_path, monkeypatch):
    from pathlib import Path

    from matplotlib.figure import Figure

    root, data, _ = setup
    out = tmp_path / "out"
    analyze(root / "pretrained", data, out, seconds_per_lang=1.0, show_progress=False)
    names = {"analysis.json", "codeword_counts.npz", "pca.png", "dendrogram.png", "similarity.png", "sharing.png"}

    def all_whole():  # every file complete (an older or a newer one), and no temporary left
        assert {p.name for p in out.iterdir()} == names
        for png in names - {"analysis.json", "codeword_counts.npz"}:
            data = (out / png).read_bytes()
            assert data.startswith(b"\x89PNG") and data.endswith(b"IEND\xaeB`\x82"), png
        assert np.load(out / "codeword_counts.npz")["counts"].sum() > 0
        assert json.loads((out / "analysis.json").read_text())["langs"] == ["de", "es", "it"]

    all_whole()

    class Interrupted(Exception):
        pass

    def half_savefig(self, fname, **kw):
        Path(fname).write_bytes(b"\x89PNG half")
        raise Interrupted

    def half_savez(file, **arrays):
        (open(file, "wb") if isinstance(file, str | Path) else file).write(b"PK half")
        raise Interrupted

    write_text = Path.write_text

    def half_write_text(self, text, *args, **kw):
        write_text(self, text[: len(text) // 2], *args, **kw)
        raise Interrupted

    for target, name, half in ((Figure, "savefig", half_savefig), (np, "savez_compressed", half_savez),
                               (Path, "write_text", half_write_text)):
        with monkeypatch.context() as patch:
            patch.setattr(target, name, half)
            with pytest.raises(Interrupted):
                analyze(root / "pretrained", data, out, seconds_per_lang=1.5, show_progress=False)
        all_whole()


def test_out_is_checked_before_the_checkpoint_is_loaded(setup, tmp_path, capsys):
    root, data, _ = setup
    (tmp_path / "file").write_text("x")
    code = main(["analyze", "--model", str(tmp_path / "missing"), "--data", str(data), "--out",
                 str(tmp_path / "file"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--out" in err and "is not a folder" in err


def test_an_amount_below_the_receptive_field_names_the_option(setup, tmp_path, capsys):
    root, data, _ = setup
    code = main(["analyze", "--model", str(root / "pretrained"), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--no-plots", "--seconds-per-lang", "0.02"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--seconds-per-lang: give at least 0.025 s" in err


def test_a_negative_seed_is_one_line_before_any_work(setup, tmp_path, capsys, monkeypatch):
    import xlsr.analysis.run as run_module

    root, data, _ = setup
    monkeypatch.setattr(run_module, "_read_languages", lambda *a, **k: pytest.fail("work started"))
    code = main(["analyze", "--model", str(root / "pretrained"), "--data", str(data), "--out", str(tmp_path / "out"),
                 "--no-plots", "--seed", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--seed: a whole number 0 or more, got -1" in err
