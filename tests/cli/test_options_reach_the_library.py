"""Each command-line option reaches the library function the command calls, under the right name, and the
defaults the help shows are the ones passed on: the library call is replaced by a stand-in that records what it
was given, so no model, corpus or LM is built."""

import pytest

from xlsr.cli.data import SHARD_WORKERS
from xlsr.cli.main import main
from xlsr.cores import available_cores
from xlsr.data.decoder_pool import DEFAULT_TIMEOUT_S


class Called(Exception):
    """Raised by a stand-in for the library function a command calls, holding its arguments."""


def _stand_in(monkeypatch, owner, name: str) -> None:
    """Replace `owner.name` by a function that raises Called(args, kwargs)."""
    def record(*args, **kwargs):
        raise Called(args, kwargs)

    monkeypatch.setattr(owner, name, record)


def _given(argv) -> tuple[tuple, dict]:
    """The (args, kwargs) the command's library call received."""
    with pytest.raises(Called) as exc:
        main([str(a) for a in argv])
    return exc.value.args


def _refused(argv, capsys) -> str:
    """The one error line of a command refused with status 2 (by the parser or by the command)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    return err.strip().splitlines()[-1]


# --- lm build -------------------------------------------------------------------------------------------------

def test_lm_build_passes_order_units_and_memory_and_defaults_to_a_word_4gram(monkeypatch, tmp_path):
    import xlsr.cli.lm

    _stand_in(monkeypatch, xlsr.cli.lm, "build_lm")
    text, out = tmp_path / "t.txt", tmp_path / "lm.arpa"
    args, kwargs = _given(["lm", "build", "--text", text, "--out", out])
    assert args == (str(text), 4, str(out)) and kwargs == {"units": "words", "memory": "500M"}  # as --help says
    args, kwargs = _given(["lm", "build", "--text", text, "--out", out, "--order", "2", "--units", "phones",
                           "--memory", "1G"])
    assert args == (str(text), 2, str(out)) and kwargs == {"units": "phones", "memory": "1G"}


# --- probe ----------------------------------------------------------------------------------------------------

def test_probe_passes_every_setting_to_the_probe(monkeypatch):
    import xlsr.analysis.probe

    _stand_in(monkeypatch, xlsr.analysis.probe, "probe")
    args, kwargs = _given(["probe", "--model", "a", "--model", "b", "--train", "tr.jsonl", "--test", "te.jsonl",
                           "--out", "o", "--layers", "cnn,0", "--labels", "chars", "--epochs", "3", "--lr", "0.05",
                           "--batch-frames", "123", "--max-batch-samples", "45678", "--cache-dtype", "float16",
                           "--seed", "7", "--device", "meta", "--no-plot"])
    assert args == (["a", "b"], "tr.jsonl", "te.jsonl", "o")
    settings = kwargs.pop("settings")
    assert (settings.epochs, settings.lr, settings.batch_frames, settings.max_batch_samples, settings.cache_dtype) == \
        (3, 0.05, 123, 45678, "float16")
    assert kwargs == {"layers": "cnn,0", "labels": "chars", "seed": 7, "device": "meta", "plot": False}


def test_probe_defaults_are_the_probe_settings_defaults(monkeypatch):
    import xlsr.analysis.probe
    from xlsr.analysis.probe import ProbeSettings

    _stand_in(monkeypatch, xlsr.analysis.probe, "probe")
    _, kwargs = _given(["probe", "--model", "a", "--train", "tr.jsonl", "--test", "te.jsonl", "--out", "o"])
    assert kwargs.pop("settings") == ProbeSettings()
    assert kwargs == {"layers": "all", "labels": "phones", "seed": 0, "device": "auto", "plot": True}


# --- analyze --------------------------------------------------------------------------------------------------

def test_analyze_passes_split_amounts_languages_seed_and_plots(monkeypatch):
    import xlsr.analysis
    from xlsr.analysis.run import DEFAULT_MAX_SECONDS

    _stand_in(monkeypatch, xlsr.analysis, "analyze")
    args, kwargs = _given(["analyze", "--model", "m", "--data", "d", "--out", "o", "--split", "dev",
                           "--seconds-per-lang", "2", "--max-seconds", "30", "--langs", "it", "es", "--seed", "3",
                           "--device", "meta", "--no-plots"])
    assert args == ("m", "d", "o")
    assert kwargs == {"split": "dev", "seconds_per_lang": 2.0, "langs": ["it", "es"], "max_seconds": 30.0, "seed": 3,
                      "device": "meta", "plots": False}
    _, kwargs = _given(["analyze", "--model", "m", "--data", "d", "--out", "o"])
    assert kwargs == {"split": "train", "seconds_per_lang": None, "langs": None, "max_seconds": DEFAULT_MAX_SECONDS,
                      "seed": 0, "device": "auto", "plots": True}


# --- demo -----------------------------------------------------------------------------------------------------

def test_demo_passes_device_workers_and_one_shared_rate(monkeypatch, tmp_path):
    import xlsr.demo
    from xlsr.demo import DemoSettings

    _stand_in(monkeypatch, xlsr.demo, "run_demo")
    (out, settings), kwargs = _given(["demo", "--out", tmp_path / "o", "--device", "cpu", "--workers", "3",
                                      "--shared-lr", "2e-4", "--released", tmp_path / "rel"])
    assert out == str(tmp_path / "o") and kwargs == {"released_dir": str(tmp_path / "rel"), "full": False,
                                                      "quick_release": False}
    assert (settings.device, settings.finetune_workers, settings.target) == ("cpu", 3, DemoSettings().target)
    assert settings.finetune_lr and set(settings.finetune_lr) == set(DemoSettings().finetune_lr)
    assert set(settings.finetune_lr.values()) == {2e-4}
    # without the options: the settings' own (auto device, workers by machine, each initialisation's own rate)
    (_, settings), kwargs = _given(["demo", "--out", tmp_path / "o", "--full"])
    assert kwargs == {"released_dir": None, "full": True, "quick_release": False}
    assert settings.device == "auto" and settings.finetune_workers is None
    assert settings.finetune_lr == DemoSettings().finetune_lr


@pytest.mark.parametrize("option, value, words", [
    ("--workers", "0", "--workers: the number of fine-tuning runs at a time, 1 or more, got 0"),
    ("--shared-lr", "0", "--shared-lr: a peak learning rate between 0 and 1, got 0"),
    ("--shared-lr", "1", "--shared-lr: a peak learning rate between 0 and 1, got 1"),
])
def test_demo_refuses_no_workers_and_a_rate_outside_0_1(option, value, words, monkeypatch, tmp_path, capsys):
    import xlsr.demo

    _stand_in(monkeypatch, xlsr.demo, "run_demo")
    assert _refused(["demo", "--out", tmp_path / "o", option, value], capsys) == f"xlsr: error: {words}"
    assert not (tmp_path / "o").exists()


# --- synth ----------------------------------------------------------------------------------------------------

def test_synth_passes_its_options_and_clean_means_the_earlier_corpus(monkeypatch, tmp_path):
    import xlsr.data.synth
    from xlsr.data.augment import DEFAULT_AUGMENT
    from xlsr.data.synth.corpus import SPEAKERS_PER_LANG

    _stand_in(monkeypatch, xlsr.data.synth, "synthesize_corpus")
    out = tmp_path / "c"
    args, kwargs = _given(["synth", "--out", out, "--langs", "it", "--utts-per-lang", "20", "--seed", "4",
                           "--workers", "2", "--noise-snr", "15", "--words-per-utt", "2-5", "--augment", "none",
                           "--voices", "basic", "--speakers-per-lang", "6"])
    assert args == (str(out), "it", 20)
    assert kwargs == {"seed": 4, "workers": 2, "noise": 15.0, "words_per_utt": (2, 5), "augment": "none",
                      "voices": "basic", "speakers_per_lang": 6}
    _, kwargs = _given(["synth", "--out", out])
    assert kwargs == {"seed": 0, "workers": 1, "noise": None, "words_per_utt": (4, 12), "augment": DEFAULT_AUGMENT,
                      "voices": "varied", "speakers_per_lang": SPEAKERS_PER_LANG}
    _, kwargs = _given(["synth", "--out", out, "--clean", "--voices", "basic"])  # agrees with --clean
    assert (kwargs["augment"], kwargs["voices"], kwargs["speakers_per_lang"]) == ("none", "basic", 10)


def test_synth_clean_with_a_clashing_option_is_one_line(monkeypatch, tmp_path, capsys):
    import xlsr.data.synth

    _stand_in(monkeypatch, xlsr.data.synth, "synthesize_corpus")
    err = _refused(["synth", "--out", tmp_path / "c", "--clean", "--speakers-per-lang", "40"], capsys)
    assert err == "xlsr: error: --speakers-per-lang: --clean means --speakers-per-lang 10; leave out one of the two"


# --- data -----------------------------------------------------------------------------------------------------

def test_data_shard_passes_size_splits_and_bad_share(monkeypatch, tmp_path):
    import xlsr.data.shards

    _stand_in(monkeypatch, xlsr.data.shards, "write_shards")
    args, kwargs = _given(["data", "shard", "--data", "d", "--out", "s", "--shard-size", "2MB",
                           "--splits", "train, test", "--max-bad-share", "0.2", "--workers", "3",
                           "--decode-timeout", "7.5"])
    assert args == ("d", "s")
    assert kwargs == {"shard_size": xlsr.data.shards.parse_size("2MB"), "splits": ["train", "test"],
                      "max_bad_share": 0.2, "workers": 3, "decode_timeout": 7.5}
    _, kwargs = _given(["data", "shard", "--data", "d", "--out", "s"])
    assert kwargs == {"shard_size": xlsr.data.shards.parse_size("1GB"), "splits": ["train", "dev"],
                      "max_bad_share": 0.05, "workers": min(available_cores(), SHARD_WORKERS),
                      "decode_timeout": DEFAULT_TIMEOUT_S}
    _, kwargs = _given(["data", "shard", "--data", "d", "--out", "s", "--decode-timeout", "0"])
    assert kwargs["decode_timeout"] is None  # 0: no limit


@pytest.mark.parametrize("argv, name, args, kwargs", [
    (["commonvoice", "cv", "--lang", "it", "--out", "o", "--max-bad-share", "0.3"], "import_common_voice",
     ("cv", "o"), {"lang": "it", "max_bad_share": 0.3}),
    (["fairseq", "a.tsv", "b.tsv", "--lang", "it", "--out", "o", "--max-bad-share", "0.3"], "import_fairseq",
     (["a.tsv", "b.tsv"], "o"), {"lang": "it", "split": None, "max_bad_share": 0.3}),
    (["folder", "src", "--transcripts", "t.txt", "--lang", "it", "--split", "dev", "--label", "phones", "--out", "o",
      "--max-bad-share", "0.3"], "import_folder",
     ("src", "t.txt", "o"), {"lang": "it", "split": "dev", "label": "phones", "max_bad_share": 0.3}),
    (["folder", "src", "--transcripts", "t.txt", "--lang", "it", "--out", "o"], "import_folder",
     ("src", "t.txt", "o"), {"lang": "it", "split": "train", "label": "text", "max_bad_share": 0.05}),
])
def test_data_import_passes_its_options_to_the_importer(argv, name, args, kwargs, monkeypatch):
    from xlsr.data import importers

    _stand_in(monkeypatch, importers, name)
    assert _given(["data", "import", *argv]) == (args, kwargs)


def test_data_import_hf_passes_columns_split_and_language(monkeypatch):
    import_hf = pytest.importorskip("xlsr.data.import_hf")

    _stand_in(monkeypatch, import_hf, "import_hf")
    args, kwargs = _given(["data", "import", "hf", "--src", "p", "--out", "o", "--audio-column", "a",
                           "--text-column", "t", "--lang-column", "l", "--split-from-filename", "--lang", "it",
                           "--split", "dev", "--max-bad-share", "0.3"])
    assert args == ("p", "o")
    assert kwargs == {"lang": "it", "split": "dev", "max_bad_share": 0.3, "audio_column": "a", "text_column": "t",
                      "lang_column": "l", "split_from_filename": True}


def test_data_import_refuses_a_language_code_that_is_a_path_before_importing(monkeypatch, capsys):
    from xlsr.data import importers

    _stand_in(monkeypatch, importers, "import_folder")
    err = _refused(["data", "import", "folder", "src", "--transcripts", "t.txt", "--lang", "../x", "--out", "o"],
                   capsys)
    assert err.startswith("xlsr: error: ") and "../x" in err


# --- plot, convert --------------------------------------------------------------------------------------------

def test_plot_passes_the_run_and_the_image_path(monkeypatch):
    import xlsr.train.curves

    _stand_in(monkeypatch, xlsr.train.curves, "plot_training_curves")
    assert _given(["plot", "run", "--out", "c.png"]) == (("run", "c.png"), {})
    assert _given(["plot", "run"]) == (("run", None), {})


def test_convert_passes_the_dictionary_and_the_language(monkeypatch, tmp_path):
    import xlsr.interop.load

    _stand_in(monkeypatch, xlsr.interop.load, "load_pretrained")
    args, kwargs = _given(["convert", tmp_path / "src.pt", tmp_path / "dst", "--to", "hf", "--dict", "d.txt",
                           "--target-lang", "fra"])
    assert args == (str(tmp_path / "src.pt"),) and kwargs == {"dictionary": "d.txt", "target_lang": "fra"}
