"""The demo pipeline (`xlsr demo --quick`) end to end, and its one-line answers to bad input."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from xlsr.cli.main import main
from xlsr.demo import DEMO_MARKER, MONOLINGUAL, MULTILINGUAL, DemoSettings, prepare_out_dir, run_demo
from xlsr.demo.finetuning import shared_protocol
from xlsr.demo.stages import synthesize
from xlsr.errors import CheckpointError, XlsrError
from xlsr.released import MULTILINGUAL_LANGS, TARGET
from xlsr.train.finetune import FinetuneConfig

# The releases' layout (group-norm CNN without bias) narrower and shallower: fine-tuned in about a third of the
# tiny preset's time, for tests whose point is not the size (runs and CNN caches bit for bit alike). A run on two
# threads still ends with other bits than on one, as with the tiny preset.
SMALL_RELEASE = {"conv_layers": [[64, 10, 5]] + [[64, 3, 2]] * 4 + [[64, 2, 2]] * 2, "hidden_size": 64,
                 "num_layers": 2, "num_heads": 2, "ffn_dim": 128, "final_dim": 64, "codevector_dim": 64,
                 "conv_pos": 32, "conv_pos_groups": 4}


def fake_releases(root, arch=None):
    """Random-weight tiny pretraining checkpoints where the released ones go (the pipeline, not their quality);
    `arch`: Wav2Vec2Config fields that replace the tiny preset's."""
    from xlsr.interop.native import save_checkpoint
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForPreTraining

    # Not the preset's architecture (as the real releases): the from-scratch baseline must copy it.
    arch = {**Wav2Vec2Config.preset("tiny").to_dict(), "extractor_mode": "group_norm", "conv_bias": False,
            "num_codevectors_per_group": 16, **(arch or {})}
    for seed, (name, langs) in enumerate([(MULTILINGUAL, MULTILINGUAL_LANGS), (MONOLINGUAL, (TARGET,))]):
        torch.manual_seed(seed)
        save_checkpoint(root / name, Wav2Vec2ForPreTraining(Wav2Vec2Config.from_dict(arch)))
        (root / name / "recipe.json").write_text(json.dumps({"corpus": {"langs": list(langs)}}))  # as the build's
    return root


@pytest.fixture(scope="module")
def quick_target(tmp_path_factory):
    """The quick demo's target corpus, its held-out set and small fake releases: (settings, corpus, held-out
    manifests, releases folder), for the tests that fine-tune on them (they write their runs elsewhere)."""
    from xlsr.demo.stages import synthesize_eval

    root = tmp_path_factory.mktemp("quick_target")
    settings = replace(DemoSettings.quick(), device="cpu")
    synthesize(settings, root / "corpus", show_progress=False, target_only=True)
    held_out = synthesize_eval(settings, root / "corpus_eval", show_progress=False)
    return settings, root / "corpus", held_out, fake_releases(root / "rel", SMALL_RELEASE)


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


@pytest.mark.parametrize("flag, message", [
    (["--shared-lr", "0"], "--shared-lr: a peak learning rate between 0 and 1, got 0"),
    (["--workers", "0"], "--workers: the number of fine-tuning runs at a time, 1 or more, got 0"),
])
def test_cli_bad_flag_exit_2_writing_nothing(tmp_path, capsys, flag, message):
    out = tmp_path / "out"
    code = main(["demo", "--out", str(out), "--quick", *flag, "--released", str(fake_releases(tmp_path / "rel"))])
    err = capsys.readouterr().err
    assert code == 2 and err == f"xlsr: error: {message}\n"
    assert not out.exists()


def test_one_released_checkpoint_missing_is_named(tmp_path):
    fake_releases(tmp_path / "rel")
    (tmp_path / "rel" / MONOLINGUAL / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=MONOLINGUAL):
        run_demo(tmp_path / "out", DemoSettings.quick(), released_dir=tmp_path / "rel", quiet=True)


def test_random_init_is_the_released_architecture_with_random_weights(tmp_path):
    """The random-weight baseline: the release's config.json alone (weights unread), fresh weights from its seed."""
    from xlsr.demo import random_init
    from xlsr.interop.native import load_checkpoint

    released = fake_releases(tmp_path / "rel") / MULTILINGUAL
    pretrained = load_checkpoint(released)
    (released / "model.safetensors").unlink()
    # (fake_releases drew the release's weights with seed 0)
    a = load_checkpoint(random_init(released, tmp_path / "a", seed=5))
    b = load_checkpoint(random_init(released, tmp_path / "b", seed=5))
    c = load_checkpoint(random_init(released, tmp_path / "c", seed=6))
    assert a.config.to_dict() == pretrained.config.to_dict()
    assert a.config.extractor_mode == "group_norm" and a.config.num_codevectors_per_group == 16
    key = "wav2vec2.feature_encoder.conv_layers.0.conv.weight"
    weights = [x.model.state_dict()[key] for x in (a, b, c, pretrained)]
    assert torch.equal(weights[0], weights[1])  # one seed, one model
    assert not torch.equal(weights[0], weights[2]) and not torch.equal(weights[0], weights[3])


def test_target_the_multilingual_release_was_pretrained_on_is_refused_in_one_line(tmp_path):
    released = fake_releases(tmp_path / "rel")
    out = tmp_path / "out"
    with pytest.raises(XlsrError) as err:
        run_demo(out, DemoSettings.quick("es"), released_dir=released, quiet=True)
    message = str(err.value)
    assert "\n" not in message and "--target es" in message and "pretrained on 'es'" in message
    assert "--full" in message
    assert not out.exists()  # nothing was written


def test_cli_target_refusal_and_unknown_target_exit_2_writing_nothing(tmp_path, capsys):
    released = str(fake_releases(tmp_path / "rel"))
    for target, words in (("fr", "pretrained on 'fr'"), ("xx", "--target: unknown language code 'xx'")):
        out = tmp_path / f"out_{target}"
        code = main(["demo", "--out", str(out), "--quick", "--target", target, "--released", released])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("xlsr: error: ") and err.count("\n") == 1 and words in err
        assert not out.exists()


def test_releases_for_a_target(tmp_path):
    """Which checkpoints a target uses: a held-out language takes the shipped multilingual one; the target's own
    monolingual one where the folder holds it, else the shipped one (labelled as another language); --full both."""
    from xlsr.demo import choose_releases
    from xlsr.released import MULTILINGUAL_LANGS, release_recipes

    rel = fake_releases(tmp_path / "rel")
    assert choose_releases("it", rel) == (MULTILINGUAL, MONOLINGUAL)
    assert choose_releases("el", rel) == (MULTILINGUAL, MONOLINGUAL)  # no tiny-monolingual-el here
    assert choose_releases("es", rel, full=True) == ("tiny-multilingual-without-es", "tiny-monolingual-es")
    recipes = release_recipes("es")
    assert recipes["tiny-multilingual-without-es"].langs == tuple(x for x in MULTILINGUAL_LANGS if x != "es")
    assert recipes["tiny-monolingual-es"].langs == ("es",)
    # an earlier --full for es left its releases in the folder: usable without --full
    for name in ("tiny-multilingual-without-es", "tiny-monolingual-es"):
        shutil.copytree(rel / MULTILINGUAL, rel / name)
    assert choose_releases("es", rel) == ("tiny-multilingual-without-es", "tiny-monolingual-es")


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
    (out / DEMO_MARKER).write_text("[1/5] synth: it: 6.8 min labeled train (41 s)\n[2/5] finetune: 9 runs (9:02)\n")
    prepare_out_dir(out)
    assert not (out / "finetune").exists() and not (out / "report.md").exists()
    assert (out / "release_work").is_dir()


@pytest.mark.parametrize("log", ["my notes on the demo\n", "[1/5] synth: ...\nmy own line\n", "\xff\xfe"])
def test_a_demo_log_of_the_users_own_is_no_earlier_demo(tmp_path, log):
    out = tmp_path / "demo"
    (out / "finetune").mkdir(parents=True)
    (out / "report.md").write_text("mine")
    (out / DEMO_MARKER).write_bytes(log.encode("latin-1") if log.startswith("\xff") else log.encode())
    with pytest.raises(XlsrError, match="holds no earlier demo"):
        prepare_out_dir(out)
    assert (out / "finetune").is_dir() and (out / "report.md").read_text() == "mine"


@pytest.mark.parametrize("change, match", [
    ({"pretrain_langs": ("es", "it")}, "held out"),
    ({"target": "xx"}, "unknown language"),
    ({"target_utts": 4}, "target_utts"),
    ({"finetune_lr": {"random": 1e-3}}, "finetune_lr: unknown initialisation 'random'"),
    ({"finetune_lr": {"scratch": 0}}, "finetune_lr.scratch: a peak learning rate"),
    ({"finetune_lr": {"scratch": "5e-4"}}, "finetune_lr.scratch"),
    ({"eval_utts": 5}, "eval_utts: 0 .* or at least 10"),
    ({"finetune_workers": 0}, "finetune_workers: a whole number"),
    ({"eval_seed": 0}, "eval_seed: 0 is the demo corpus's or the releases' corpus seed"),
    ({"eval_seed": 1}, "eval_seed: 1 is the demo corpus's"),
    ({"seed": 1}, "seed: 1 is the releases' corpus seed"),
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
    assert "| initialisation | held-out test PER, mean ± sample sd (n−1) | per seed | test-split PER |" in report
    assert "![pca](analysis/pca.png)" in report and "Held-out test set: 10 further utterances" in report
    assert "Transformer frozen for the first 2 of 3 updates" in report  # the protocol, stated
    # the checkpoint's pretraining languages as its recipe.json records them, not the demo's two
    assert "multilingual checkpoint (its recipe.json): " + ", ".join(MULTILINGUAL_LANGS) + "." in report
    data = json.loads((out / "demo.json").read_text())
    seeds = list(settings.finetune_seeds)
    assert [(r["name"], r["seed"]) for r in data["finetune"]] == \
        [(name, seed) for name in ("multilingual", "monolingual", "scratch") for seed in seeds]  # every run kept
    assert data["finetune_summary"]["scratch"]["test_per"] == [r["test_per"] for r in data["finetune"][-len(seeds):]]

    # The runs share one fine-tuning configuration: their resolved config.yaml differ in init, seed, out and the
    # peak rate, which is the one chosen on dev for their initialisation (and stated in the report).
    import yaml

    configs = {(r.name, r.seed): yaml.safe_load((Path(r.run_dir) / "config.yaml").read_text()) for r in result.finetune}
    assert len(configs) == 3 * len(seeds)
    assert {key: c["lr"] for key, c in configs.items()} == {key: settings.finetune_lr[key[0]] for key in configs}
    assert data["finetune_lr"] == settings.finetune_lr
    per_run = ("init", "seed", "out", "lr")
    shared = [{k: v for k, v in c.items() if k not in per_run} for c in configs.values()]
    assert all(c == shared[0] for c in shared)
    assert shared[0]["freeze_feature_encoder"] is True and shared[0]["freeze_ratio"] == 0.5
    assert shared[0] == {k: v for k, v in data["finetune_config"].items()}  # what the report states
    assert {c["seed"] for c in configs.values()} == set(seeds)
    for name, init in (("multilingual", released / MULTILINGUAL), ("monolingual", released / MONOLINGUAL),
                       ("scratch", out / "finetune" / "random_init")):
        assert {configs[(name, seed)]["init"] for seed in seeds} == {str(init)}
    # ... the same model: the scratch run has the released architecture, random weights; every CNN frozen
    tuned = {key: load_pretrained(Path(r.run_dir) / "checkpoints" / "last").config.to_dict()
             for key, r in zip(configs, result.finetune)}
    assert all(t == tuned[("multilingual", seeds[0])] for t in tuned.values())
    assert tuned[("scratch", seeds[0])]["extractor_mode"] == "group_norm"
    assert tuned[("scratch", seeds[0])]["feature_grad_mult"] == 0.0
    # ... and the frozen CNN ran at most once per utterance and model: the seeds of one init share its cache
    # (3 updates do not reach every utterance, so a later seed may still compute some the first did not see)
    report = json.loads((Path(result.finetune[0].run_dir) / "data_report.json").read_text())
    utterances = report["train_utterances"] + sum(report["dev_utterances"].values())
    for name in ("multilingual", "monolingual", "scratch"):
        passes = [r.cnn_passes for r in result.finetune if r.name == name]
        assert passes[0] > 0 and sum(passes) <= utterances < len(seeds) * passes[0]

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

    # ... and on the held-out set (its own seed, every split): the three manifests' edits pooled
    from xlsr.demo.finetuning import best_checkpoint, evaluate_per

    held_out = [out / "corpus_eval" / settings.target / f"{split}.jsonl" for split in ("train", "dev", "test")]
    assert data["eval_set"]["utterances"] == settings.eval_utts == sum(len(read_manifest(m)) for m in held_out)
    assert not {u.audio for u in test} & {u.audio for m in held_out for u in read_manifest(m)}
    r = result.finetune[-1]
    each = [evaluate_per(best_checkpoint(Path(r.run_dir)), m)["counts"] for m in held_out]
    assert r.eval_counts["ref_len"] == sum(c["ref_len"] for c in each) > r.counts["ref_len"]
    assert r.eval_per == pytest.approx(sum(c["errors"] for c in each) / sum(c["ref_len"] for c in each), abs=1e-12)
    assert data["finetune_summary"]["scratch"]["eval_per"] == [x["eval_per"] for x in data["finetune"][-len(seeds):]]

    # the live pretraining run really trained for the requested updates
    from xlsr.train.monitor import read_log

    updates = [rec["update"] for rec in read_log(out / "pretrain_live" / "log.jsonl") if rec.get("split") == "train"]
    assert updates[-1] == settings.pretrain_updates
    assert data["pretrain"]["langs"] == sorted([settings.target, *settings.pretrain_langs])  # the target's audio too
    # synth.json describes both synthesis calls into the corpus folder
    synth = json.loads((out / "corpus" / "synth.json").read_text())
    assert list(synth["languages"]) == [settings.target, *settings.pretrain_langs]


@pytest.mark.slow
def test_full_rebuilds_the_releases_without_a_pretraining_language_as_target(tmp_path):
    """--full --target es: the multilingual release is rebuilt without es, the monolingual one on es."""
    out = tmp_path / "demo"
    result = run_demo(out, DemoSettings.quick("es"), full=True, quick_release=True, show_progress=False, quiet=True)
    multi, mono = out / "released" / "tiny-multilingual-without-es", out / "released" / "tiny-monolingual-es"
    assert list(result.released.values()) == [str(multi), str(mono)]
    langs = json.loads((multi / "recipe.json").read_text())["corpus"]["langs"]
    assert "es" not in langs and len(langs) == 2  # the quick recipe: the first two of the 14 others
    assert json.loads((mono / "recipe.json").read_text())["corpus"]["langs"] == ["es"]
    assert "es" not in result.settings["pretrain_langs"]
    assert result.release_langs == langs
    assert {r.init for r in result.finetune if r.name != "scratch"} == {str(multi), str(mono)}
    # the releases it left are found by a later demo on that folder, without --full
    from xlsr.demo import choose_releases

    assert choose_releases("es", out / "released") == (multi.name, mono.name)


def test_report_shows_the_measured_figures_as_they_are(tmp_path):
    from xlsr.demo import DemoResult, FinetuneResult, comparison, per_table, write_report

    def run(name, seed, test, dev, counts):
        init = {"multilingual": MULTILINGUAL, "monolingual": MONOLINGUAL}.get(name, name)
        return FinetuneResult(name, f"rel/{init}", seed, f"r_{name}_{seed}", test, dev, counts, 100.0)

    edits = {"substitutions": 5, "deletions": 3, "insertions": 1, "ref_len": 17}
    runs = [run("multilingual", 1, 0.50, 0.49, edits), run("multilingual", 2, 0.52, None, edits),
            run("multilingual", 3, 0.54, 0.47, {**edits, "deletions": 6}),
            run("monolingual", 1, 0.437, None, edits), run("monolingual", 2, 0.437, None, edits),
            run("monolingual", 3, 0.437, None, edits),
            run("scratch", 1, 0.981, 0.97, {}), run("scratch", 2, 0.961, 0.95, {}), run("scratch", 3, 0.971, 0.96, {})]
    table = per_table(runs)
    # mean ± sample sd (hand computed: 0.50, 0.52, 0.54 -> 52.0 ± 2.0), each seed's value, mean edits
    assert "| initialisation | test PER, mean ± sample sd (n−1) | per seed |" in table
    assert "| multilingual | 52.0% ± 2.0 | 50.0, 52.0, 54.0 (seeds 1, 2, 3) | 48.0% ± 1.4 | 5 / 4 / 1 of 17 |" in table
    assert "| monolingual | 43.7% ± 0.0 |" in table and "| – |" in table
    assert "| scratch | 97.1% ± 1.0 |" in table
    assert comparison(runs) == ("The multilingual initialisation gives a higher mean PER than the monolingual one "
                                "(52.0% ± 2.0 against 43.7% ± 0.0): a gap of 8.3 points, larger than twice the "
                                "larger seed sd (4.0 points). Multilingual / random weights: 0.54x.")
    close = runs[:3] + [run("monolingual", s, p, None, edits) for s, p in ((1, 0.50), (2, 0.55), (3, 0.48))]
    assert comparison(close).endswith("within twice the larger seed sd (7.2 points), so not a finding at this "
                                      "number of seeds.")

    settings = {**DemoSettings.quick().__dict__}
    protocol = shared_protocol(FinetuneConfig(max_updates=800))
    rates = {"multilingual": 2e-3, "monolingual": 1e-3, "scratch": 5e-4}
    result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs, finetune_config=protocol, finetune_lr=rates,
                        corpus={settings["target"]: {"train": 6.0, "dev": 0.8, "test": 0.8}},
                        analysis={"summary_table": "TABLE", "files": {"pca": "pca.png"}},
                        pretrain={"first": {"loss": 5.6}, "last": {"loss": 4.9}, "curve": "pretrain_curve.png"})
    text = write_report(result).read_text()
    assert "Lowest mean test PER: **monolingual**" in text and "52.0% ± 2.0" in text
    assert "Transformer frozen for the first 400 of 800 updates (`freeze_ratio` 0.5)" in text
    assert "a peak per initialisation, chosen on the dev set by one rule for all (multilingual 0.002, monolingual " \
           "0.001, random weights 0.0005" in text and "CNN frozen for every initialisation" in text
    assert "Only `init`, `seed` and the peak learning rate `lr` differ" in text
    same = write_report(replace(result, finetune_lr=dict.fromkeys(rates, 5e-4))).read_text()
    assert "with a peak of 0.0005" in same and "Only `init` and `seed` differ" in same and "no setting" in same
    assert "5.60 → 4.90" in text and "![pca](analysis/pca.png)" in text
    assert "Held-out test set" not in text  # these runs were not scored on one

    # Scored on the held-out set too: the table leads with it, the test split's column beside it, and the
    # comparison is made on it (then once more on the test split)
    held = [replace(r, eval_per=e, eval_counts={**edits, "ref_len": 170})
            for r, e in zip(runs, (0.40, 0.41, 0.42, 0.45, 0.47, 0.49, 0.80, 0.82, 0.78))]
    table = per_table(held)
    assert "| initialisation | held-out test PER, mean ± sample sd (n−1) | per seed | test-split PER |" in table
    assert "| multilingual | 41.0% ± 1.0 | 40.0, 41.0, 42.0 (seeds 1, 2, 3) | 52.0% ± 2.0 | 48.0% ± 1.4 | " \
           "5 / 3 / 1 of 170 |" in table
    assert comparison(held) == ("The multilingual initialisation gives a lower mean PER than the monolingual one "
                                "(41.0% ± 1.0 against 47.0% ± 2.0): a gap of 6.0 points, larger than twice the larger "
                                "seed sd (4.0 points). Multilingual / random weights: 0.51x.")
    ev = {"utterances": 300, "minutes": 15.2, "speakers": 40, "manifests": []}
    text = write_report(replace(result, finetune=held, eval_set=ev)).read_text()
    assert "Held-out test set: 300 further utterances" in text and "15.2 min, 40 speakers" in text
    assert "Lowest mean held-out test PER: **multilingual**" in text
    assert "On the 0.8-min test split alone: The multilingual initialisation gives a higher mean PER" in text


def test_report_labels_state_the_unlabeled_minutes(tmp_path):
    from xlsr.demo.report import init_label

    release = tmp_path / "tiny-monolingual-it"
    release.mkdir()
    (release / "recipe.json").write_text(json.dumps({"corpus": {"train_hours": 0.24}}))
    assert init_label("monolingual", str(release), "it").endswith("14 min of unlabeled audio)")
    assert "min of unlabeled" not in init_label("monolingual", str(tmp_path / "tiny-monolingual-it-gone"), "it")


def test_choose_rate_lowest_mean_dev_per_ties_go_to_the_lower_rate():
    from xlsr.demo.settings import FINETUNE_LR, FINETUNE_LR_SWEEP, choose_rate

    assert choose_rate({2e-4: 64.9, 5e-4: 57.5, 1e-3: 53.1}) == 1e-3
    assert choose_rate({5e-4: 73.2, 1e-3: 73.9, 2e-3: 75.0}) == 5e-4
    assert choose_rate({1e-3: 53.0, 2e-3: 52.6}) == 1e-3  # within 0.5 points: the lower rate
    assert choose_rate({1e-3: 53.05, 2e-3: 52.4}) == 2e-3
    assert choose_rate({1e-3: 53.0, 2e-3: 52.6}, tie=0.0) == 2e-3
    # the shipped rates are the rule applied to the shipped dev table, and DemoSettings uses them
    assert FINETUNE_LR == {name: choose_rate(t) for name, t in FINETUNE_LR_SWEEP.items()}
    assert DemoSettings().finetune_lr == FINETUNE_LR and set(FINETUNE_LR) == {"multilingual", "monolingual", "scratch"}


def test_synthesize_target_only_writes_the_target_alone(tmp_path):
    settings = DemoSettings.quick()
    minutes = synthesize(settings, tmp_path / "corpus", show_progress=False, target_only=True)
    assert list(minutes) == [settings.target]
    assert sorted(p.name for p in (tmp_path / "corpus").iterdir() if p.is_dir()) == [settings.target]
    assert all(minutes[settings.target][split] > 0 for split in ("train", "dev", "test"))


def test_runs_side_by_side_are_the_runs_one_at_a_time(quick_target, tmp_path):
    """Two worker processes of half the cores' threads each (one on CI's two): every run ends with the weights as
    many threads give it alone."""
    from xlsr.cores import available_cores
    from xlsr.demo.finetuning import finetune_inits

    settings, corpus, held_out, released = quick_target
    inits = {"multilingual": released / MULTILINGUAL, "monolingual": released / MONOLINGUAL}
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, available_cores() // 2))  # what each of the two workers below gets
    try:
        one = finetune_inits(replace(settings, finetune_workers=1), inits, corpus, tmp_path / "one",
                             eval_manifests=held_out)
    finally:
        torch.set_num_threads(threads)
    finished = []
    stale = tmp_path / "two" / ".cnn_features-killed"  # left by a demo killed in this stage
    stale.mkdir(parents=True)
    (stale / "multilingual.pt").write_bytes(b"x" * 1000)
    trained = []
    two = finetune_inits(replace(settings, finetune_workers=2), inits, corpus, tmp_path / "two",
                         eval_manifests=held_out, on_run=finished.append, on_trained=trained.append)
    # each run is announced when its training ends, with its dev PER, before the scorings that end the stage
    assert sorted((r.name, r.seed, r.dev_per) for r in trained) == sorted((r.name, r.seed, r.dev_per) for r in two)
    assert not list((tmp_path / "two").glob(".cnn_features-*"))  # the stale folder and this run's own are gone
    assert [(r.name, r.seed) for r in two] == [(r.name, r.seed) for r in one] == \
        [(name, seed) for name in inits for seed in settings.finetune_seeds]
    assert sorted((r.name, r.seed) for r in finished) == sorted((r.name, r.seed) for r in two)
    for a, b in zip(one, two):
        weights = [(Path(r.run_dir) / "checkpoints" / "last" / "model.safetensors").read_bytes() for r in (a, b)]
        assert weights[0] == weights[1] and Path(b.run_dir).parent.parent == tmp_path / "two"
        assert (a.test_per, a.eval_per, a.counts, a.eval_counts) == (b.test_per, b.eval_per, b.counts, b.eval_counts)
    # the runs of another init differ (the comparison above can fail)
    assert weights[0] != (Path(one[0].run_dir) / "checkpoints" / "last" / "model.safetensors").read_bytes()
    # each init's frozen CNN ran once (its features job), counted for its first seed
    for name in inits:
        passes = [r.cnn_passes for r in two if r.name == name]
        assert passes[0] > 0 and passes[1:] == [0] * (len(passes) - 1)

    # a run that fails in a worker fails the call, in one line
    with pytest.raises(XlsrError, match="missing"):
        finetune_inits(replace(settings, finetune_workers=2), {"multilingual": tmp_path / "missing"}, corpus,
                       tmp_path / "bad")


@pytest.mark.usefixtures("one_thread")
def test_an_inits_cnn_output_computed_once_is_what_its_runs_compute(quick_target, tmp_path):
    """Side by side, the runs of an init read its frozen CNN's output from one pass (`init_features`, through a
    file): each entry is bit for bit the one a run computes from its own batches (train, dev) and its scoring (test
    split, held-out set), and the pass covers every utterance a run reads."""
    from xlsr.demo.finetuning import finetune_one, init_features
    from xlsr.train.feature_cache import load_caches, save_caches

    settings, corpus, held_out, released = quick_target
    init = str(released / MULTILINGUAL)
    filled = {}  # what a run fills as it trains, validates and is scored
    result = finetune_one("multilingual", init, 1, settings, corpus, tmp_path / "run", filled, held_out)
    computed, passes = init_features("multilingual", init, settings, corpus, held_out)
    save_caches(computed, tmp_path / "features.pt")
    loaded = load_caches(tmp_path / "features.pt")
    assert set(loaded) == set(filled) == {"train", "dev", "scoring"}
    for split, cache in filled.items():
        assert loaded[split].cnn == cache.cnn is not None
        assert cache.entries and all(torch.equal(loaded[split].entries[key], feats) for key, feats in cache.entries.items())
    assert len(loaded["dev"]) == len(filled["dev"]) and len(loaded["scoring"]) == len(filled["scoring"])
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert len(loaded["train"]) == report["train_utterances"] >= len(filled["train"])  # 3 updates saw only some
    assert passes == len(loaded["train"]) + len(loaded["dev"])
    # a run from those caches sends nothing through the CNN and ends where the run above did
    again = finetune_one("multilingual", init, 1, settings, corpus, tmp_path / "again", loaded, held_out)
    assert again.cnn_passes == 0 and loaded["scoring"].misses == 0
    assert (again.test_per, again.counts, again.eval_per, again.dev_per) == \
        (result.test_per, result.counts, result.eval_per, result.dev_per)
    assert (tmp_path / "again" / "checkpoints" / "last" / "model.safetensors").read_bytes() == \
        (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").read_bytes()


def _sigint_at_first_step(monkeypatch, task_cls):
    """The user presses Ctrl-C once, during the first training step of a `task_cls` run (the trainer then saves and
    returns normally, as it does for the real key press)."""
    import os
    import signal

    step = task_cls.train_step
    calls = []

    def interrupted(self, model, batch):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, model, batch)

    monkeypatch.setattr(task_cls, "train_step", interrupted)


@pytest.mark.usefixtures("one_thread")
def test_ctrl_c_during_fine_tuning_stops_the_demo_with_130_and_no_report(tmp_path, monkeypatch, capsys):
    """A fine-tuning run stopped by Ctrl-C/SIGTERM saved and returned: the demo must neither score nor report it."""
    from xlsr.train.finetune import FinetuneTask

    _sigint_at_first_step(monkeypatch, FinetuneTask)
    out = tmp_path / "out"
    code = main(["demo", "--out", str(out), "--quick", "--device", "cpu",
                 "--released", str(fake_releases(tmp_path / "rel"))])
    err = capsys.readouterr().err
    assert code == 130
    last = err.strip().splitlines()[-1]
    assert last.startswith("xlsr: interrupted: ") and "fine-tuning run multilingual seed 1" in last
    assert "stopped before its 3 updates" in last
    assert not (out / "report.md").exists() and not (out / "demo.json").exists()
    assert "finetune:" not in (out / DEMO_MARKER).read_text()  # the stage was not logged as done


@pytest.mark.usefixtures("one_thread")
def test_ctrl_c_during_the_live_pretraining_run_is_no_finished_run(tmp_path, monkeypatch):
    from xlsr.demo.stages import live_pretrain
    from xlsr.train.pretrain import PretrainTask

    settings = replace(DemoSettings.quick(), device="cpu")
    synthesize(settings, tmp_path / "corpus", show_progress=False)
    # the stop is tested, not the update: a smaller model and batch than the quick demo's, on the recipe's settings
    settings = replace(settings, pretrain_settings={**settings.pretrain_settings, "max_tokens": 32_000,
                                                    "model": SMALL_RELEASE})
    _sigint_at_first_step(monkeypatch, PretrainTask)
    with pytest.raises(XlsrError, match="live pretraining run .* stopped before its 3 updates") as err:
        live_pretrain(settings, tmp_path / "corpus", tmp_path / "run", tmp_path / "curve.png")
    assert type(err.value).__name__ == "TrainingInterrupted"  # the CLI's exit status 130
    assert not (tmp_path / "curve.png").exists()


def monkeypatch_no_work(monkeypatch):
    """A demo that starts working (instead of refusing) fails the test at once."""
    import xlsr.demo.pipeline as pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the demo started working instead of refusing")

    monkeypatch.setattr(pipeline, "synthesize", no_work)
    monkeypatch.setattr(pipeline, "recreate_released", no_work)


def test_released_dir_held_out_target_is_checked_by_its_recipe_not_its_folder_name(tmp_path, capsys, monkeypatch):
    """--released DIR: a `tiny-multilingual` folder whose recipe.json lists the target, or has no recipe.json, is
    refused in one line before anything is written."""
    monkeypatch_no_work(monkeypatch)
    released = fake_releases(tmp_path / "rel")
    record = released / MULTILINGUAL / "recipe.json"
    record.write_text(json.dumps({"corpus": {"langs": ["es", TARGET, "de"]}}))
    out = tmp_path / "out"
    with pytest.raises(XlsrError) as err:
        run_demo(out, DemoSettings.quick(), released_dir=released, quiet=True)
    message = str(err.value)
    assert "\n" not in message and f"pretrained on {TARGET!r}" in message and "recipe.json" in message
    assert not out.exists()
    record.unlink()
    code = main(["demo", "--out", str(out), "--quick", "--released", str(released)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "recipe.json: missing" in err
    assert not out.exists()


def test_full_with_released_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch_no_work(monkeypatch)
    out = tmp_path / "out"
    code = main(["demo", "--out", str(out), "--quick", "--full", "--released", str(fake_releases(tmp_path / "rel"))])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--full" in err and "--released" in err
    assert not out.exists()


def test_report_names_the_checkpoints_pretraining_languages_from_its_recipe(tmp_path):
    from xlsr.demo import DemoResult, FinetuneResult, write_report

    settings = {**DemoSettings.quick().__dict__}  # the demo's corpus: two of the pretraining languages
    runs = [FinetuneResult(name, f"rel/{name}", 1, "r", 0.5, 0.5, {"substitutions": 1, "deletions": 1,
                                                                     "insertions": 0, "ref_len": 4}, 1.0)
            for name in ("multilingual", "monolingual", "scratch")]
    result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs, release_langs=list(MULTILINGUAL_LANGS),
                        corpus={settings["target"]: {"train": 1.0, "dev": 0.1, "test": 0.1}})
    text = write_report(result).read_text()
    assert ("Pretraining languages of the\nmultilingual checkpoint (its recipe.json): " + ", ".join(MULTILINGUAL_LANGS)
            + ". The analysis reads this demo's audio of " + ", ".join(settings["pretrain_langs"])) in text


def test_report_says_the_live_run_reads_the_targets_audio_as_its_config_does(tmp_path):
    """The live pretraining run sets no `langs`, so it trains on every language of the demo's corpus, the target's
    unlabeled audio included: the report's sentence names what the run's resolved configuration reads."""
    from xlsr.demo import DemoResult, FinetuneResult, write_report
    from xlsr.demo.stages import live_pretrain_config, live_pretrain_langs

    settings = DemoSettings.quick()
    corpus = tmp_path / "corpus"
    for lang in (settings.target, *settings.pretrain_langs):  # the layout `synthesize` writes
        for split in ("train", "dev", "test"):
            (corpus / lang).mkdir(parents=True, exist_ok=True)
            (corpus / lang / f"{split}.jsonl").write_text("")
    cfg = live_pretrain_config(settings, corpus, tmp_path / "run")
    langs = live_pretrain_langs(cfg)
    assert cfg.langs is None and sorted(langs) == sorted([settings.target, *settings.pretrain_langs])
    runs = [FinetuneResult(name, f"rel/{name}", 1, "r", 0.5, 0.5, {"substitutions": 1, "deletions": 1,
                                                                     "insertions": 0, "ref_len": 4}, 1.0)
            for name in ("multilingual", "monolingual", "scratch")]
    result = DemoResult(out_dir=tmp_path, settings={**settings.__dict__}, finetune=runs,
                        release_langs=list(MULTILINGUAL_LANGS), pretrain={"langs": langs},
                        corpus={settings.target: {"train": 1.0, "dev": 0.1, "test": 0.1}})
    text = " ".join(write_report(result).read_text().split())
    analysed = ", ".join([*settings.pretrain_langs, settings.target])
    assert (f"The analysis reads this demo's audio of {analysed}; the live pretraining run reads the demo's audio of "
            f"every language, `{settings.target}`'s unlabeled audio included: {', '.join(langs)}.") in text


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_a_non_finite_per_is_left_out_of_the_mean_said_and_written_as_null(tmp_path, bad):
    """An inf PER (a reference without phones and a hypothesis with some) or a NaN one: the demo still reports, each
    mean is over the finite values with the count said ("n/a" with none), and demo.json holds null."""
    from xlsr.demo import DemoResult, FinetuneResult, comparison, per_table, summarize, write_report

    edits = {"substitutions": 1, "deletions": 1, "insertions": 0, "ref_len": 10}
    pers = {"multilingual": (0.50, 0.52, 0.54), "monolingual": (bad, 0.60, 0.62), "scratch": (bad, bad, bad)}
    runs = [FinetuneResult(name, f"rel/{name}", seed, "r", per, 0.5, edits, 1.0)
            for name, values in pers.items() for seed, per in zip((1, 2, 3), values)]
    summary = summarize(runs)
    assert summary["monolingual"]["test_per_mean"] == pytest.approx(0.61)
    assert summary["monolingual"]["test_per_nonfinite"] == 1 and summary["multilingual"]["test_per_nonfinite"] == 0
    assert summary["scratch"]["test_per_mean"] is None and summary["scratch"]["test_per_nonfinite"] == 3
    table = per_table(runs)
    assert "| monolingual | 61.0% ± 1.4 (1 seed left out: PER not finite) |" in table
    assert "| scratch | n/a (PER not finite) |" in table
    assert comparison(runs) == ("The multilingual initialisation gives a lower mean PER than the monolingual one "
                                "(52.0% ± 2.0 against 61.0% ± 1.4 (1 seed left out: PER not finite)): a gap of 9.0 "
                                "points, larger than twice the larger seed sd (4.0 points).")
    no_mono = [r if r.name != "monolingual" else replace(r, test_per=bad) for r in runs]
    assert comparison(no_mono).startswith("Multilingual against monolingual initialisation: n/a (52.0% ± 2.0 "
                                          "against n/a (PER not finite))")
    settings = {**DemoSettings.quick().__dict__}
    result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs, finetune_summary=summary,
                        corpus={settings["target"]: {"train": 1.0, "dev": 0.1, "test": 0.1}})
    assert "Lowest mean test PER: **multilingual**" in write_report(result).read_text()
    assert "Lowest mean test PER: **n/a" in write_report(replace(result, finetune=[
        replace(r, test_per=bad) for r in runs])).read_text()

    from xlsr.demo.pipeline import demo_json

    def refuse(constant):
        raise AssertionError(f"demo.json holds {constant}, which is no JSON")

    data = json.loads(demo_json(result), parse_constant=refuse)
    assert data["finetune"][3]["test_per"] is None and data["finetune"][4]["test_per"] == 0.6
    assert data["finetune_summary"]["scratch"]["test_per"] == [None, None, None]
    assert data["finetune_summary"]["scratch"]["test_per_mean"] is None


def test_missing_espeak_is_refused_before_an_earlier_demo_is_removed(tmp_path, capsys, monkeypatch):
    """espeak-ng is checked with the other refusals, before prepare_out_dir removes an earlier demo's outputs."""
    import sys

    monkeypatch_no_work(monkeypatch)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # as if espeakng-loader were not installed
    out = tmp_path / "out"
    (out / "finetune").mkdir(parents=True)
    (out / DEMO_MARKER).write_text("[1/5] synth: earlier\n")
    (out / "report.md").write_text("my earlier report")
    code = main(["demo", "--out", str(out), "--quick", "--released", str(fake_releases(tmp_path / "rel"))])
    err = capsys.readouterr().err
    assert code == 2 and err == "xlsr: error: espeakng-loader is not installed: pip install espeakng-loader\n"
    assert (out / "report.md").read_text() == "my earlier report" and (out / "finetune").is_dir()
    assert (out / DEMO_MARKER).read_text() == "[1/5] synth: earlier\n"


def test_report_for_another_target_says_whose_monolingual_release_and_rates_it_used(tmp_path):
    """--target el without --full: `tiny-monolingual-it` and the rates chosen on Italian's dev set are used, and the
    report says so instead of calling them the target's monolingual model and rates chosen on its dev set."""
    from xlsr.demo import DemoResult, FinetuneResult, comparison, write_report
    from xlsr.demo.settings import FINETUNE_LR

    released = fake_releases(tmp_path / "rel")
    edits = {"substitutions": 1, "deletions": 1, "insertions": 0, "ref_len": 4}

    def report(target):
        settings = {**DemoSettings.quick(target).__dict__}
        inits = {"multilingual": released / MULTILINGUAL, "monolingual": released / MONOLINGUAL, "scratch": tmp_path}
        runs = [FinetuneResult(name, str(init), seed, "r", per + seed / 100, per, edits, 1.0)
                for (name, init), per in zip(inits.items(), (0.4, 0.5, 0.7)) for seed in (1, 2)]
        result = DemoResult(out_dir=tmp_path, settings=settings, finetune=runs, finetune_lr=dict(FINETUNE_LR),
                            finetune_config=shared_protocol(FinetuneConfig(max_updates=800)),
                            corpus={target: {"train": 1.0, "dev": 0.1, "test": 0.1}})
        return runs, write_report(result).read_text()

    runs, text = report("el")
    assert f"than the monolingual `{MONOLINGUAL}`, pretrained on `{TARGET}` rather than on `el` (41.5% ± 0.7 against " \
           "51.5% ± 0.7)" in text
    assert comparison(runs, target="el") in text and "not the paper's monolingual baseline" in text
    assert f"a peak per initialisation, chosen on `{TARGET}`'s dev set by one rule for all, used unchanged for `el` (" in text
    assert "chosen on the dev set" not in text
    runs, text = report(TARGET)  # the target's own release and rates: as before
    assert "than the monolingual one (41.5% ± 0.7 against 51.5% ± 0.7)" in text and "not the paper's" not in text
    assert "a peak per initialisation, chosen on the dev set by one rule for all (" in text


@pytest.mark.usefixtures("one_thread")
def test_scoring_reuses_the_frozen_cnn_of_another_seed_with_the_same_numbers(quick_target, tmp_path):
    """Two fine-tuned checkpoints of one init share their frozen CNN: the second is scored from the first's CNN
    output (no CNN pass) with exactly the figures a scoring from the waveforms gives; a checkpoint whose CNN differs
    is scored from its own waveforms."""
    from xlsr.demo.finetuning import evaluate_pooled
    from xlsr.interop.native import save_checkpoint
    from xlsr.model import Wav2Vec2Config, Wav2Vec2ForCTC
    from xlsr.train.feature_cache import FeatureCache

    manifests = quick_target[2]  # the held-out set
    phones = sorted({p for m in manifests for line in m.read_text().splitlines() for p in json.loads(line)["phones"].split()})
    vocab = ["<blank>", "<unk>", *phones]
    cfg = Wav2Vec2Config.from_dict({**Wav2Vec2Config.preset("tiny").to_dict(), **SMALL_RELEASE, "num_layers": 1})
    torch.manual_seed(0)
    first = Wav2Vec2ForCTC(cfg, len(vocab))
    second = Wav2Vec2ForCTC(cfg, len(vocab))
    second.wav2vec2.feature_encoder.load_state_dict(first.wav2vec2.feature_encoder.state_dict())  # one frozen CNN
    other = Wav2Vec2ForCTC(cfg, len(vocab))  # its own CNN
    paths = [save_checkpoint(tmp_path / name, m, vocab=vocab, metadata={"labels": "phones"})
             for name, m in (("first", first), ("second", second), ("other", other))]

    cache = FeatureCache()
    utterances = sum(len(m.read_text().splitlines()) for m in manifests)
    assert evaluate_pooled(paths[0], manifests, "cpu", cache) == evaluate_pooled(paths[0], manifests, "cpu")
    assert cache.misses == utterances and cache.hits == 0
    cached = evaluate_pooled(paths[1], manifests, "cpu", cache)
    assert cache.misses == utterances and cache.hits == utterances  # the second checkpoint ran no CNN
    assert cached == evaluate_pooled(paths[1], manifests, "cpu") and cached != evaluate_pooled(paths[0], manifests, "cpu")
    assert evaluate_pooled(paths[2], manifests, "cpu", cache) == evaluate_pooled(paths[2], manifests, "cpu")
    assert cache.hits == utterances  # the other CNN did not read the cache


def test_best_dev_per_reads_past_a_non_finite_validation(tmp_path):
    from xlsr.demo.finetuning import best_dev_per

    # train/monitor.py writes a non-finite PER as null
    lines = [{"split": "valid", "update": 50, "per": None}, {"split": "valid", "update": 100, "per": 0.42},
             {"split": "train", "update": 100, "loss": 1.0}, {"split": "valid", "update": 150, "per": 0.47}]
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert best_dev_per(tmp_path) == 0.42
