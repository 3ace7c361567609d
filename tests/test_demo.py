"""The demo pipeline (`xlsr demo --quick`) end to end, and its one-line answers to bad input."""

import json
from pathlib import Path

import pytest
import torch

from xlsr.cli.main import main
from xlsr.demo import DEMO_MARKER, MONOLINGUAL, MULTILINGUAL, DemoSettings, prepare_out_dir, run_demo
from xlsr.errors import CheckpointError, XlsrError


def fake_releases(root):
    """Random-weight tiny pretraining checkpoints where the released ones go (the pipeline, not their quality)."""
    from xlsr.interop.native import save_checkpoint
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

    # Not the preset's architecture (as the real releases): the from-scratch baseline must copy it.
    arch = {**Wav2Vec2Config.preset("tiny").to_dict(), "extractor_mode": "group_norm", "conv_bias": False,
            "num_codevectors_per_group": 16}
    for seed, name in enumerate([MULTILINGUAL, MONOLINGUAL]):
        torch.manual_seed(seed)
        save_checkpoint(root / name, Wav2Vec2ForPreTraining(Wav2Vec2Config.from_dict(arch)))
    return root


def test_missing_released_checkpoints_one_line_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(CheckpointError) as err:
        run_demo(out, DemoSettings.quick(), released_dir=tmp_path / "nothing", quiet=True)
    message = str(err.value)
    assert "\n" not in message
    assert MULTILINGUAL in message and "model.safetensors" in message
    assert "xlsr demo --full" in message and "release_checkpoints.sh" in message
    assert not out.exists()  # nothing was written


def test_cli_missing_released_exit_2(tmp_path, capsys):
    code = main(["demo", "--out", str(tmp_path / "out"), "--quick", "--released", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("xlsr: error: ") and err.count("\n") == 1


def test_one_released_checkpoint_missing_is_named(tmp_path):
    fake_releases(tmp_path / "rel")
    (tmp_path / "rel" / MONOLINGUAL / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=MONOLINGUAL):
        run_demo(tmp_path / "out", DemoSettings.quick(), released_dir=tmp_path / "rel", quiet=True)


def test_scratch_architecture_is_the_released_config_with_finetuning_defaults(tmp_path):
    """The from-scratch baseline's `model` overrides come from the release's config.json alone (weights unread)."""
    from xlsr.demo import scratch_architecture
    from xlsr.interop.native import load_checkpoint
    from xlsr.train.finetune import finetune_model_defaults

    released = fake_releases(tmp_path / "rel") / MULTILINGUAL
    wanted = {**load_checkpoint(released).config.to_dict(), **finetune_model_defaults()}
    (released / "model.safetensors").unlink()
    assert scratch_architecture(released) == wanted
    assert wanted["extractor_mode"] == "group_norm" and wanted["num_codevectors_per_group"] == 16


def test_foreign_out_folder_is_refused_and_kept(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(XlsrError, match="not empty"):
        prepare_out_dir(out)
    assert (out / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(XlsrError, match="not a folder"):
        prepare_out_dir(tmp_path / "file")


def test_earlier_demo_outputs_replaced_release_work_kept(tmp_path):
    out = tmp_path / "demo"
    (out / "finetune" / "scratch").mkdir(parents=True)
    (out / "release_work").mkdir()
    (out / "report.md").write_text("old")
    (out / DEMO_MARKER).write_text("old")
    prepare_out_dir(out)
    assert not (out / "finetune").exists() and not (out / "report.md").exists()
    assert (out / "release_work").is_dir()


@pytest.mark.parametrize("change, match", [
    ({"pretrain_langs": ("es", "it")}, "held out"),
    ({"target": "xx"}, "unknown language"),
    ({"target_utts": 4}, "target_utts"),
])
def test_bad_settings(tmp_path, change, match):
    settings = DemoSettings.quick()
    for k, v in change.items():
        setattr(settings, k, v)
    with pytest.raises(XlsrError, match=match):
        run_demo(tmp_path / "out", settings, released_dir=fake_releases(tmp_path / "rel"), quiet=True)


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    from xlsr.data.audio import load_audio
    from xlsr.data.manifest import read_manifest
    from xlsr.decode.greedy import greedy_decode
    from xlsr.interop.load import load_pretrained

    released = fake_releases(tmp_path / "rel")
    out = tmp_path / "demo"
    settings = DemoSettings.quick()
    result = run_demo(out, settings, released_dir=released, show_progress=False, quiet=True)

    # every stage wrote its output, and the log has one line per stage
    lines = (out / DEMO_MARKER).read_text().splitlines()
    assert [line.split(":")[0].split("] ")[1] for line in lines] == ["synth", "finetune", "analysis", "pretrain", "report"]
    for name in ("pca.png", "dendrogram.png", "similarity.png", "sharing.png", "analysis.json"):
        assert (out / "analysis" / name).stat().st_size > 0
    assert (out / "pretrain_curve.png").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert "| initialisation | test PER" in report and "![pca](analysis/pca.png)" in report
    data = json.loads((out / "demo.json").read_text())
    assert [r["name"] for r in data["finetune"]] == ["multilingual", "monolingual", "scratch"]

    # the three runs started from what they claim, with the same settings otherwise
    import yaml

    configs = {r.name: yaml.safe_load((Path(r.run_dir) / "config.yaml").read_text()) for r in result.finetune}
    assert configs["multilingual"]["init"] == str(released / MULTILINGUAL)
    assert configs["monolingual"]["init"] == str(released / MONOLINGUAL)
    assert configs["scratch"]["init"] == "none"
    strip = [{k: v for k, v in c.items() if k not in ("init", "out", "model")} for c in configs.values()]
    assert strip[0] == strip[1] == strip[2]  # seed, updates, schedule, data: identical
    # ... and the same model: the scratch run has the released architecture, random weights
    # (feature_grad_mult differs by design: the pretrained CNNs are frozen, the scratch CNN trains)
    tuned = {r.name: {k: v for k, v in load_pretrained(Path(r.run_dir) / "checkpoints" / "last").config.to_dict().items()
                      if k != "feature_grad_mult"} for r in result.finetune}
    assert tuned["multilingual"] == tuned["monolingual"] == tuned["scratch"]
    assert tuned["scratch"]["extractor_mode"] == "group_norm"

    # the reported PER is what the fine-tuned model does on the test set (recomputed here, scored by jiwer)
    jiwer = pytest.importorskip("jiwer")
    test = read_manifest(out / "corpus" / settings.target / "test.jsonl")
    for r in result.finetune:
        ckpt = Path(r.run_dir) / "checkpoints" / "best"
        loaded = load_pretrained(ckpt if (ckpt / "config.json").exists() else Path(r.run_dir) / "checkpoints" / "last")
        model = loaded.model.eval()
        refs, hyps = [], []
        for u in test:
            x = torch.from_numpy(load_audio(u.audio, normalize=loaded.config.normalize_waveform))[None]
            with torch.no_grad():
                hyp = greedy_decode(model(x).logits)[0]
            hyps.append(" ".join(loaded.vocab[i] for i in hyp.token_ids if loaded.vocab[i] != "|"))
            refs.append(" ".join(p for p in u.phones.split() if p != "|"))
        # jiwer refuses empty hypotheses: those are all deletions
        errors = sum(len(ref.split()) for ref, h in zip(refs, hyps) if not h)
        pairs = [(ref, h) for ref, h in zip(refs, hyps) if h]
        if pairs:
            m = jiwer.process_words([p[0] for p in pairs], [p[1] for p in pairs])
            errors += m.substitutions + m.deletions + m.insertions
        ref_len = sum(len(ref.split()) for ref in refs)
        assert r.test_per == pytest.approx(errors / ref_len, abs=1e-9)
        assert r.counts["ref_len"] == ref_len

    # the live pretraining run really trained for the requested updates
    from xlsr.train.monitor import read_log

    updates = [rec["update"] for rec in read_log(out / "pretrain_live" / "log.jsonl") if rec.get("split") == "train"]
    assert updates[-1] == settings.pretrain_updates


def test_report_shows_the_measured_figures_as_they_are(tmp_path):
    from xlsr.demo import DemoResult, FinetuneResult, comparison, write_report

    runs = [FinetuneResult("multilingual", "m", "r1", 0.512, 0.49, {"substitutions": 5, "deletions": 3,
                                                                    "insertions": 1, "ref_len": 17}, 100.0),
            FinetuneResult("monolingual", "o", "r2", 0.437, None, {"substitutions": 4, "deletions": 2,
                                                                  "insertions": 1, "ref_len": 17}, 90.0),
            FinetuneResult("scratch", "none", "r3", 0.981, 0.97, {}, 80.0)]
    settings = {**DemoSettings.quick().__dict__}
    result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs,
                        corpus={settings["target"]: {"train": 6.0, "dev": 0.8, "test": 0.8}},
                        analysis={"summary_table": "TABLE", "files": {"pca": "pca.png"}},
                        pretrain={"first": {"loss": 5.6}, "last": {"loss": 4.9}, "curve": "pretrain_curve.png"})
    text = write_report(result).read_text()
    assert "| 51.2% | 49.0% | 5 / 3 / 1 of 17 |" in text and "| 43.7% | – |" in text and "98.1%" in text
    assert "Lowest test PER: **monolingual**" in text
    assert comparison(runs) == ("The multilingual initialisation gives a higher PER than the monolingual one "
                                "(51.2% against 43.7%, 17% relative).")
    assert "5.60 → 4.90" in text and "![pca](analysis/pca.png)" in text
