"""What the shared-unit analysis feeds its model, its figures and its summary: the audio as the model was trained
on it, batches within their budget, the clips as read, and each figure's numbers under the right labels."""

import numpy as np
import pytest
import soundfile as sf
import torch

from xlsr.analysis import analyze, plots
from xlsr.analysis import codebook as cb
from xlsr.analysis.extract import extract_codeword_counts, read_clip, waveform_pieces
from xlsr.analysis.probe_features import read_labeled, resolve_layers
from xlsr.analysis.run import _write_plots
from xlsr.analysis.selection import Clip, select_clips
from xlsr.data.audio import load_audio, normalize_waveform
from xlsr.data.manifest import Utterance, read_manifest, write_manifest
from xlsr.errors import XlsrError
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

SR = 16000
V = 8


def layer_norm_config() -> Wav2Vec2Config:
    """A tiny XLSR-layout model (layer-norm CNN with bias): its codes depend on the waveform's scale and offset."""
    return Wav2Vec2Config(
        conv_layers=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2, extractor_mode="layer_norm",
        conv_bias=True, layer_norm_first=True, hidden_size=32, num_layers=1, num_heads=2, ffn_dim=64, final_dim=16,
        codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=V, conv_pos=16, conv_pos_groups=4,
        normalize_waveform=True,
    )


def write_language(root, lang, seconds, seed, claimed=None):
    """Quiet tones with an offset (far from z-normed), and train.jsonl; `claimed` overrides manifest lengths."""
    rng = np.random.default_rng(seed)
    folder = root / lang
    folder.mkdir(parents=True)
    utts = []
    for i, dur in enumerate(seconds):
        t = np.arange(int(dur * SR)) / SR
        x = 0.02 + 0.01 * np.sin(2 * np.pi * (150 + 200 * seed) * t) + 0.004 * rng.standard_normal(t.size)
        path = folder / f"{lang}_{i}.wav"
        sf.write(path, x.astype(np.float32), SR, subtype="FLOAT")
        n = t.size if claimed is None else claimed[i]
        utts.append(Utterance(audio=str(path), num_samples=n, lang=lang, speaker="s0", id=f"{lang}_{i}",
                              phones="a b"))
    write_manifest(folder / "train.jsonl", utts)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    data = root / "data"
    for seed, lang in enumerate(["it", "es", "de"]):
        write_language(data, lang, [0.6, 0.5, 0.7 + 0.2 * seed], seed)
    torch.manual_seed(0)
    model = Wav2Vec2ForPreTraining(layer_norm_config())
    save_checkpoint(root / "pretrained", model)
    return root, data, model.eval()


def direct_counts(model, utts, seconds, seed, normalize):
    """Codeword histogram of the analysis's clips, each quantized alone."""
    ids = []
    for clip in select_clips(utts, seconds, seed=seed):
        x = torch.from_numpy(load_audio(clip.utterance.audio, normalize=normalize)[: clip.num_samples])[None]
        with torch.no_grad():
            codes, _ = model.quantize(x, torch.tensor([x.shape[1]]))
        ids.append(codes[0, :, 0] * V + codes[0, :, 1])
    return np.bincount(torch.cat(ids).numpy(), minlength=V * V)


def test_a_model_trained_on_z_normed_audio_is_analysed_on_z_normed_audio(setup, tmp_path):
    root, data, model = setup
    report = analyze(root / "pretrained", data, tmp_path / "out", langs=["it", "de"], seconds_per_lang=1.0,
                     seed=1, plots=False, show_progress=False)
    for row, lang in enumerate(report.counts.langs):
        utts = read_manifest(data / lang / "train.jsonl")
        expected = direct_counts(model, utts, 1.0, 1, normalize=True)
        assert not np.array_equal(expected, direct_counts(model, utts, 1.0, 1, normalize=False))  # it matters
        got = np.zeros(V * V, dtype=np.int64)
        got[report.counts.codewords] = report.counts.counts[row]
        np.testing.assert_array_equal(got, expected)


def test_available_seconds_is_the_manifests_audio_not_the_amount_analysed(setup, tmp_path):
    root, data, _ = setup
    report = analyze(root / "pretrained", data, tmp_path / "out", seconds_per_lang=1.0, plots=False,
                     show_progress=False)
    for lang in report.summary["langs"]:
        figures = report.summary["per_language"][lang]
        total = sum(u.num_samples for u in read_manifest(data / lang / "train.jsonl")) / SR
        assert figures["available_seconds"] == pytest.approx(total) and total > 1.7
        assert figures["seconds"] == pytest.approx(1.0)


def test_padded_batches_stay_within_the_sample_budget(setup, monkeypatch):
    root, data, model = setup
    shapes = []
    quantize = model.quantize

    def recorded(waveforms, lengths):
        shapes.append(tuple(waveforms.shape))
        return quantize(waveforms, lengths)

    monkeypatch.setattr(model, "quantize", recorded)
    utts = {lang: read_manifest(data / lang / "train.jsonl") for lang in ["it", "de"]}
    # clips of 0.5-1.1 s: two rows of the shortest fit 20,000 samples, two of the longest do not
    extract_codeword_counts(model, utts, 1.8, seed=0, num_codevectors_per_group=V, normalize=True,
                            device=torch.device("cpu"), max_batch_samples=20000, show_progress=False)
    assert any(rows > 1 for rows, _ in shapes)
    for rows, width in shapes:
        assert rows == 1 or rows * width <= 20000, shapes


def test_a_clip_counts_the_samples_its_file_holds(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, np.zeros(6000, dtype=np.float32), SR)
    utt = Utterance(audio=str(path), num_samples=16000, lang="xx", id="short")  # the manifest says more
    clip = read_clip(Clip(utt, 12000), normalize=False)
    assert clip.num_samples == clip.audio.shape[0] == 6000


def test_a_clip_read_shorter_than_the_receptive_field_is_replaced():
    from dataclasses import dataclass

    @dataclass
    class Utt:
        audio: str
        num_samples: int

    utts = [Utt(f"u{i}.wav", n) for i, n in enumerate([8000, 8000, 8000, 8000])]
    first = select_clips(utts, 1.0, seed=0)[0].utterance.audio

    def read(clip):  # the first chosen file holds 300 samples, not the 8000 its manifest line says
        n = 300 if clip.utterance.audio == first else clip.num_samples
        return Clip(clip.utterance, n, np.zeros(n, dtype=np.float32))

    clips = select_clips(utts, 1.0, seed=0, read=read)
    assert first not in [c.utterance.audio for c in clips]
    assert [c.num_samples for c in clips] == [8000, 8000]


def test_a_last_piece_of_exactly_the_receptive_field_is_kept():
    pieces = waveform_pieces(np.zeros(4400, dtype=np.float32), min_samples=400, max_chunk_samples=4000)
    assert [p.shape[0] for p in pieces] == [4000, 400]
    pieces = waveform_pieces(np.zeros(4399, dtype=np.float32), min_samples=400, max_chunk_samples=4000)
    assert [p.shape[0] for p in pieces] == [4000]


def statistics_with_a_non_alphabetical_dendrogram():
    """cb.statistics of 4 languages whose dendrogram leaves are not in the summary's (sorted) language order."""
    rng = np.random.default_rng(0)
    base = {"a": rng.integers(0, 4, 400), "b": rng.integers(20, 24, 400)}
    ids = {"de": base["a"], "es": base["b"], "fr": np.concatenate([base["a"], rng.integers(0, 64, 40)]),
           "it": np.concatenate([base["b"], rng.integers(0, 64, 40)])}
    counts = cb.count_codewords(ids, num_codewords=64)
    summary = {"langs": counts.langs, **cb.statistics(counts)}  # as analyze() writes it
    assert summary["clustering"]["leaves"] != summary["langs"]
    families = {"de": "Zeta", "es": "Alpha", "fr": "Alpha", "it": "Zeta"}  # sorted families != language order
    for lang in summary["langs"]:
        summary["per_language"][lang]["family"] = families[lang]
    return summary, families


def test_the_figures_get_each_number_under_its_own_language(tmp_path, monkeypatch):
    summary, families = statistics_with_a_non_alphabetical_dendrogram()
    calls = {}

    def recorder(name):
        def record(*args, **kw):
            calls[name] = args
            return tmp_path / f"{name}.png"
        return record

    for name in ("plot_pca", "plot_dendrogram", "plot_heatmap", "plot_sharing"):
        monkeypatch.setattr(plots, name, recorder(name))
    _write_plots(summary, tmp_path)
    langs = summary["langs"]
    jsd = np.array(summary["similarity"]["js_distance"])
    matrix, labels = calls["plot_heatmap"][:2]
    assert labels == summary["clustering"]["leaves"]  # the heatmap follows the dendrogram
    for i, a in enumerate(labels):
        for j, b in enumerate(labels):
            assert matrix[i, j] == jsd[langs.index(a), langs.index(b)]
    coords, _, pca_langs, pca_families = calls["plot_pca"][:4]
    for i, lang in enumerate(pca_langs):
        assert pca_families[i] == families[lang]
        assert coords[i].tolist() == summary["pca"]["coords"][lang]
    _, dendro_langs, dendro_families = calls["plot_dendrogram"][:3]
    assert [families[lang] for lang in dendro_langs] == list(dendro_families)


def captured_figure(monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_pca_points_sit_at_their_coordinates(tmp_path, monkeypatch):
    figures = captured_figure(monkeypatch)
    coords = np.array([[0.1, -0.5], [0.7, 0.2], [-0.3, 0.9]])
    plots.plot_pca(coords, np.array([0.6, 0.3]), ["de", "es", "it"], ["Germanic", "Romance", "Romance"],
                   tmp_path / "pca.png")
    ax = figures[0].axes[0]
    points = sorted(tuple(p) for c in ax.collections for p in np.asarray(c.get_offsets()).tolist())
    assert points == sorted(tuple(p) for p in coords.tolist())
    assert sorted(tuple(t.xy) for t in ax.texts) == sorted(tuple(p) for p in coords.tolist())


def test_sharing_bars_stand_at_one_to_l_languages(tmp_path, monkeypatch):
    figures = captured_figure(monkeypatch)
    plots.plot_sharing(np.array([5, 3, 0, 2]), tmp_path / "sharing.png")
    bars = figures[0].axes[0].patches
    assert [b.get_x() + b.get_width() / 2 for b in bars] == [1, 2, 3, 4]
    assert [b.get_height() for b in bars] == [5, 3, 0, 2]


def test_probe_layers_beyond_the_last_block_are_refused():
    assert resolve_layers(["cnn", 0, 4], 4, "m") == ["cnn", 0, 4]
    with pytest.raises(XlsrError, match=r"m has 4 Transformer layers; --layers asked for 5"):
        resolve_layers(["cnn", 5], 4, "m")


def test_probe_keeps_an_utterance_of_exactly_the_receptive_field(tmp_path):
    write_language(tmp_path, "xx", [400 / SR, 399 / SR, 0.1], 0)
    data = read_labeled(tmp_path / "xx" / "train.jsonl", "phones", min_samples=400)
    assert [w.shape[0] for w in data.waveforms] == [400, 1600] and data.skipped == 1
    np.testing.assert_array_equal(data.waveforms[0], load_audio(tmp_path / "xx" / "xx_0.wav"))
    assert not np.allclose(data.waveforms[0], normalize_waveform(data.waveforms[0]))
