"""`xlsr probe` holds every waveform and every probed layer's features: before extracting, it estimates that memory
from the manifests and refuses in one line when the machine has less available."""

import sys
from pathlib import Path

import pytest
import torch

import xlsr.analysis.probe_features as probe_features
from xlsr.analysis.probe import ProbeSettings, probe
from xlsr.analysis.probe_features import compute_features, read_labeled
from xlsr.cli.main import main
from xlsr.interop.native import save_checkpoint
from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining
from xlsr.text.vocab import Vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))
from _tones import write_tone_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def micro_config(num_layers: int = 2) -> Wav2Vec2Config:
    conv = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    return Wav2Vec2Config(conv_layers=conv, hidden_size=32, num_layers=num_layers, num_heads=2, ffn_dim=64,
                          final_dim=16, codevector_dim=16, num_codevector_groups=2, num_codevectors_per_group=8,
                          conv_pos=16, conv_pos_groups=4)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe_memory")
    train = write_tone_corpus(root / "data", "train", 6, seed=1)
    test = write_tone_corpus(root / "data", "test", 3, seed=2)
    torch.manual_seed(0)
    save_checkpoint(root / "small", Wav2Vec2ForPreTraining(micro_config(2)))
    save_checkpoint(root / "deeper", Wav2Vec2ForPreTraining(micro_config(5)))
    return root, train, test


def _meminfo(tmp_path: Path, monkeypatch, available_kb: int | None) -> None:
    text = "MemTotal:       32000000 kB\nMemFree:         1000000 kB\n"
    if available_kb is not None:
        text += f"MemAvailable:   {available_kb} kB\n"
    (tmp_path / "meminfo").write_text(text + "Buffers:          100000 kB\n")
    monkeypatch.setattr(probe_features, "MEMINFO", tmp_path / "meminfo", raising=False)
    # no memory cgroup: the machine the tests run on may be a container with a limit of its own
    monkeypatch.setattr(probe_features, "PROC_CGROUP", tmp_path / "no-cgroup")


def test_the_estimate_is_what_the_feature_cache_and_the_audio_hold(setup):
    root, train, test = setup
    model = Wav2Vec2ForPreTraining(micro_config(2)).eval()
    layers = ["cnn", 0, 2]
    datas = [read_labeled(m, "phones", min_samples=400) for m in (train, test)]
    vocab = Vocabulary.build(datas[0].labels, "phones")
    train_samples, test_samples = ([len(w) for w in d.waveforms] for d in datas)
    for dtype in (torch.float32, torch.float16):
        estimate = probe_features.estimate_memory(train_samples, test_samples, [(model.config, layers)], dtype)
        items = [u for d in datas for u in compute_features(model.wav2vec2, d, vocab, layers,
                                                            device=torch.device("cpu"), cache_dtype=dtype)]
        held = sum(f.numel() * f.element_size() for u in items for f in u.features)
        assert estimate.features == held  # once: the padded batches are packed from the cache as it is freed
        assert estimate.audio == sum(w.nbytes for d in datas for w in d.waveforms)
        assert estimate.values == 16 + 32 + 32 and estimate.frames == sum(u.features[0].shape[0] for u in items)


def test_the_largest_model_sets_the_estimate_one_model_at_a_time():
    small, deeper = micro_config(2), micro_config(5)
    one = probe_features.estimate_memory([16000], [32000], [(small, ["cnn", 0, 1, 2])], torch.float32)
    both = probe_features.estimate_memory([16000], [32000], [(small, ["cnn", 0, 1, 2]), (deeper, [0, 1, 2, 3, 4, 5])],
                                          torch.float32)
    frames = small.num_frames(16000) + small.num_frames(32000)
    assert (one.frames, one.values, one.features) == (frames, 16 + 3 * 32, frames * (16 + 3 * 32) * 4)
    assert one.statistics == small.num_frames(16000) * 32 * 16  # the widest layer's train frames, 16 bytes a value
    assert (both.values, both.features, both.statistics) == (6 * 32, frames * 6 * 32 * 4, one.statistics)
    assert one.audio == both.audio == 48000 * 4


def test_a_probe_larger_than_the_memory_available_is_refused_in_one_line(setup, tmp_path, monkeypatch, capsys):
    root, train, test = setup
    _meminfo(tmp_path, monkeypatch, available_kb=100)  # 100 kB: less than the features of these few seconds
    out = tmp_path / "out"
    code = main(["probe", "--model", str(root / "small"), "--model", str(root / "deeper"), "--train", str(train),
                 "--test", str(test), "--out", str(out), "--epochs", "1", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("xlsr: error: probe: the audio and the probed layers' features would take about ")
    assert ("of memory, and 102.4 kB is available: probe fewer layers (--layers, e.g. cnn,0,3), store the features "
            "in half precision (--cache-dtype float16), or give --train/--test manifests with fewer utterances\n"
            ) in err
    assert not out.exists()


def test_the_estimate_names_its_parts_and_nothing_is_refused_without_a_figure(setup, tmp_path, monkeypatch):
    root, train, test = setup
    settings = ProbeSettings(epochs=1)
    _meminfo(tmp_path, monkeypatch, available_kb=100)
    with pytest.raises(probe_features.XlsrError) as refused:
        probe(root / "deeper", train, test, tmp_path / "out", layers="cnn,5", settings=settings, plot=False,
              show_progress=False)
    assert ") of memory, and 102.4 kB is available" in str(refused.value)
    assert "frames x 48 values x 4 bytes; " in str(refused.value)
    assert " more while the widest layer's statistics are computed) of memory" in str(refused.value)
    # no MemAvailable line (an old kernel), or no /proc at all (macOS, Windows): nothing to go by, nothing refused
    for available in (None, "missing"):
        if available == "missing":
            monkeypatch.setattr(probe_features, "MEMINFO", tmp_path / "no" / "meminfo")  # no cgroup either (_meminfo)
        else:
            _meminfo(tmp_path, monkeypatch, available_kb=None)
        assert probe_features.available_memory(torch.device("cpu")) is None
        report = probe(root / "deeper", train, test, tmp_path / f"out-{available}", layers="cnn,5", settings=settings,
                       plot=False, show_progress=False)
        assert [r["layer"] for r in report.summary["layers"]] == ["cnn", 5]


def test_available_memory_is_read_from_meminfo(tmp_path, monkeypatch):
    _meminfo(tmp_path, monkeypatch, available_kb=24056272)
    assert probe_features.available_memory(torch.device("cpu")) == 24056272 * 1024
    assert probe_features.available_memory(torch.device("meta")) is None  # a device without a figure


def test_on_a_gpu_the_features_are_weighed_against_its_free_memory_and_the_audio_against_ram(tmp_path, monkeypatch):
    _meminfo(tmp_path, monkeypatch, available_kb=4_000)  # 4 MB of RAM: room for the audio, not for the features
    base = Wav2Vec2Config.preset("base")
    estimate = probe_features.estimate_memory([160_000] * 2, [160_000], [(base, ["cnn", *range(13)])], torch.float32)
    assert estimate.audio < 4_000 * 1024 < estimate.features
    gpu = torch.device("cuda:0")
    on_gpu = estimate.features + estimate.statistics  # the statistics are computed where the features are
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (on_gpu, 80 * 2**30))
    probe_features.check_memory(estimate, gpu)  # the features fit the GPU exactly, the audio fits RAM
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (on_gpu - 1, 80 * 2**30))
    with pytest.raises(probe_features.XlsrError, match=r"statistics are computed\) of cuda:0 memory, and "):
        probe_features.check_memory(estimate, gpu)
    with pytest.raises(probe_features.XlsrError, match=r"statistics are computed\) of memory, and 4.1 MB is"):
        probe_features.check_memory(estimate, torch.device("cpu"))  # on the CPU, the features are in RAM too
