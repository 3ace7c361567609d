"""DIR/report.md: the PER table (mean ± sample sd (n−1) over seeds), the fine-tuning protocol, the analysis, the live
run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xlsr.atomic import write_text
from xlsr.demo.finetuning import FinetuneResult, summarize
from xlsr.demo.settings import FINETUNE_LR, release_langs
from xlsr.jsonl import parse_json
from xlsr.released.recipes import TARGET, monolingual_name
from xlsr.train.finetune_config import FinetuneConfig


@dataclass
class DemoResult:
    """What the demo measured and where it wrote it (demo.json holds all of it)."""

    out_dir: Path
    settings: dict
    corpus: dict = field(default_factory=dict)
    finetune: list[FinetuneResult] = field(default_factory=list)  # every run: each init x each seed
    finetune_summary: dict = field(default_factory=dict)  # per init: mean and sample sd (n−1) over the seeds
    finetune_config: dict = field(default_factory=dict)  # the configuration every run shares
    finetune_lr: dict = field(default_factory=dict)  # the peak learning rate of each initialisation's runs
    analysis: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    released: dict = field(default_factory=dict)
    eval_set: dict = field(default_factory=dict)  # the larger held-out test set: utterances, minutes, speakers
    release_langs: list = field(default_factory=list)  # the multilingual checkpoint's pretraining languages (recipe.json)
    report: Path | None = None


def duration(seconds: float) -> str:
    """Seconds below 90, else minutes."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def unlabeled_minutes(checkpoint: str) -> str:
    """", N min of unlabeled audio" from a release's recipe.json (its corpus's train split), or "" without one."""
    try:
        hours = parse_json((Path(checkpoint) / "recipe.json").read_text())["corpus"]["train_hours"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f", {60 * hours:.0f} min of unlabeled audio"


def init_label(name: str, checkpoint: str, target: str) -> str:
    """What an initialisation is, for the table."""
    release = Path(checkpoint).name
    if name == "multilingual":
        return f"{release} (pretrained on other languages, the target held out{unlabeled_minutes(checkpoint)})"
    if name == "monolingual":
        if release == monolingual_name(target):
            return f"{release} (pretrained on the target's unlabeled audio{unlabeled_minutes(checkpoint)})"
        return f"{release} (pretrained on another single language; no monolingual release for `{target}`)"
    if name == "scratch":
        return "random weights (the released architecture, drawn once; nothing pretrained)"
    return name


def init_name(name: str) -> str:
    """An initialisation as the report's sentences name it ("scratch" is random weights, as the table says)."""
    return "random weights" if name == "scratch" else name


def pm(mean: float | None, sd: float | None) -> str:
    """A rate's mean ± sample sd (n−1) in percent ("–" without a mean; no "±" for a single value)."""
    if mean is None:
        return "–"
    return f"{100 * mean:.1f}%" + ("" if sd is None else f" ± {100 * sd:.1f}")


def rate(summary: dict, key: str) -> str:
    """An initialisation's `key` PER (test_per, dev_per, eval_per) from `summarize`, as `pm` writes it, saying how
    many seeds' PER was not finite (inf or NaN) and so left out of the mean; "n/a" when none was finite."""
    left_out = summary.get(key + "_nonfinite", 0)
    if not left_out:
        return pm(summary[key + "_mean"], summary[key + "_sd"])
    if summary[key + "_mean"] is None:
        return "n/a (PER not finite)"
    seeds = f"{left_out} seed{'s' if left_out > 1 else ''}"
    return f"{pm(summary[key + '_mean'], summary[key + '_sd'])} ({seeds} left out: PER not finite)"


def ranked(summary: dict, key: str) -> list[str]:
    """The initialisations by mean `key` PER, lowest first; those without a finite one last."""
    return sorted(summary, key=lambda name: (summary[name][key + "_mean"] is None, summary[name][key + "_mean"] or 0))


def lead_key(results: list[FinetuneResult]) -> str:
    """The PER the table leads with: the larger held-out test set's where every run was scored on it."""
    return "eval_per" if results and all(r.eval_per is not None for r in results) else "test_per"


MEAN_SD = "mean ± sample sd (n−1)"  # statistics.stdev over the seeds (xlsr.demo.finetuning.mean_sd)


def another_monolingual(checkpoint: str, target: str | None) -> str:
    """'' when the monolingual run started from the target's own release (or the target is not known); otherwise
    the release it started from instead and what that was pretrained on, e.g. "`tiny-monolingual-it`, pretrained on
    `it` rather than on `el`" (without --full, another target uses the shipped Italian one)."""
    release = Path(checkpoint).name
    if target is None or release == monolingual_name(target):
        return ""
    langs = release_langs(checkpoint) or [release.removeprefix("tiny-monolingual-")]
    return f"`{release}`, pretrained on {', '.join(f'`{lang}`' for lang in langs)} rather than on `{target}`"


def per_table(results: list[FinetuneResult], target: str | None = None) -> str:
    """The PER table, one row per initialisation: mean ± sample sd (n−1) over its seeds, and each seed's value (Markdown); led by
    the held-out test set where the runs were scored on it, the test split's column beside it."""
    held_out = lead_key(results) == "eval_per"
    first = (f"held-out test PER, {MEAN_SD} | per seed | test-split PER" if held_out
             else f"test PER, {MEAN_SD} | per seed")
    rows = [f"| initialisation | {first} | best dev PER | sub / del / ins of ref, mean | time per run |",
            "|---|---:|---|" + ("---:|" if held_out else "") + "---:|---|---:|"]
    for name, s in summarize(results).items():
        e = s["eval_edits_mean"] if held_out else s["edits_mean"]
        key = "eval_per" if held_out else "test_per"
        seeds = ", ".join(f"{100 * p:.1f}" for p in s[key])
        label = init_label(name, s["init"], target) if target else name
        split = f" {rate(s, 'test_per')} |" if held_out else ""
        rows.append(f"| {label} | {rate(s, key)} | {seeds} (seeds "
                    f"{', '.join(map(str, s['seeds']))}) |{split} {rate(s, 'dev_per')} | "
                    f"{e['substitutions']:.0f} / {e['deletions']:.0f} / {e['insertions']:.0f} of {e['ref_len']:.0f} | "
                    f"{duration(s['seconds_mean'])} |")
    return "\n".join(rows)


def comparison(results: list[FinetuneResult], key: str | None = None, target: str | None = None) -> str:
    """Multilingual against monolingual initialisation, as measured by `key` (default: the PER the table leads with),
    whether the seeds separate them, and the multilingual model's PER as a share of random weights'; given the
    `target`, a monolingual model pretrained on another language is named as such."""
    summary = summarize(results)
    if "multilingual" not in summary or "monolingual" not in summary:
        return ""
    key = key or lead_key(results)
    a, b = summary["multilingual"], summary["monolingual"]
    multi, mono = a[key + "_mean"], b[key + "_mean"]
    figures = f"{rate(a, key)} against {rate(b, key)}"
    if multi is None or mono is None:
        return f"Multilingual against monolingual initialisation: n/a ({figures}): no finite PER to compare."
    ratio = ""
    if "scratch" in summary and summary["scratch"][key + "_mean"]:
        ratio = f" Multilingual / random weights: {multi / summary['scratch'][key + '_mean']:.2f}x."
    if multi == mono:
        return f"Multilingual and monolingual initialisation tie ({figures}).{ratio}"
    word = "lower" if multi < mono else "higher"
    other = another_monolingual(b["init"], target)
    mono_name = f"the monolingual {other}" if other else "the monolingual one"
    sentence = f"The multilingual initialisation gives a {word} mean PER than {mono_name} ({figures}"
    sds = [sd for sd in (a[key + "_sd"], b[key + "_sd"]) if sd is not None]
    if not sds:
        each = "one finite PER each" if a.get(key + "_nonfinite") or b.get(key + "_nonfinite") else "one seed each"
        return sentence + f"; {each}, so the spread between seeds is unknown).{ratio}"
    gap, spread = abs(multi - mono), 2 * max(sds)
    verdict = "larger than" if gap > spread else "within"
    return (sentence + f"): a gap of {100 * gap:.1f} points, {verdict} twice the larger seed sd "
            f"({100 * spread:.1f} points)" + ("." if gap > spread else ", so not a finding at this number of seeds.")
            + ratio)


def demo_audio_read(settings: dict, pretrain: dict) -> str:
    """Which languages of this demo's audio the analysis and the live pretraining run read (for a demo whose
    languages are not the multilingual checkpoint's): the live run sets no `langs`, so it reads every language in the
    corpus, the target's unlabeled audio included (`pretrain["langs"]`, recorded by the run)."""
    target = settings["target"]
    analysis = [*settings["pretrain_langs"], *([target] if settings.get("analysis_with_target") else [])]
    live = pretrain.get("langs") or [target, *settings["pretrain_langs"]]  # a result from before the run recorded them
    with_target = f", `{target}`'s unlabeled audio included" if target in live else ""
    return (f" The analysis reads this demo's audio of {', '.join(analysis)}; the live pretraining run reads the "
            f"demo's audio of every language{with_target}: {', '.join(live)}.")


def rates_differ(rates: dict) -> bool:
    """Whether the initialisations were fine-tuned at different peak rates."""
    return len(set(rates.values())) > 1


def rates_chosen(rates: dict, target: str | None) -> str:
    """How the per-initialisation peak rates came about, as the report states it: chosen on the dev set (the shipped
    DemoSettings.finetune_lr, chosen on `it`'s: used unchanged for another target), or given."""
    if any(FINETUNE_LR.get(name) != rate for name, rate in rates.items()):
        return "set per initialisation (not the rates chosen on the dev set)"
    if target in (None, TARGET):
        return "chosen on the dev set by one rule for all"
    return f"chosen on `{TARGET}`'s dev set by one rule for all, used unchanged for `{target}`"


def peak(rates: dict, fallback: float, target: str | None = None) -> str:
    """'a peak of R' when every initialisation has the same rate, else each one's, named as in the table."""
    if not rates_differ(rates):
        return f"a peak of {next(iter(rates.values()), fallback):g}"
    return f"a peak per initialisation, {rates_chosen(rates, target)} (" + ", ".join(
        f"{init_name(name)} {rate:g}" for name, rate in rates.items()) + \
        "; DemoSettings.finetune_lr)"


def protocol(p: dict, settings: dict, rates: dict | None = None) -> str:
    """The one fine-tuning configuration of all runs, as Markdown bullets (from a run's resolved config)."""
    freeze = p["freeze_updates"] if p.get("freeze_updates") is not None else round(p["freeze_ratio"] * p["max_updates"])
    m = p["model"]
    seeds = settings["finetune_seeds"]
    return "\n".join([
        f"- the CNN frozen for every initialisation (`freeze_feature_encoder: {str(p['freeze_feature_encoder']).lower()}`,"
        f" fairseq's `feature_grad_mult` 0); its output is computed once per model and shared by the seeds run in "
        f"the same process" + (f" ({w} runs side by side, one process each)" if (w := settings.get("finetune_workers"))
                                 and w > 1 else "") + ";",
        f"- the Transformer frozen for the first {freeze} of {p['max_updates']} updates (`freeze_ratio` "
        f"{p['freeze_ratio']:g}), so that only the new CTC head trains while it is random (fairseq: the first 10k "
        f"updates of its 13k/20k low-resource runs);",
        f"- Adam, {p['lr_schedule'].replace('_', '-')} learning rate (phases "
        f"{'/'.join(f'{x:g}' for x in p['phase_ratio'])}) with {peak(rates or {}, p.get('lr', FinetuneConfig.lr), settings.get('target'))}"
        f"{f' (the new head at {h:g}x that rate)' if (h := p.get('head_lr_scale', 1.0)) != 1 else ''}; CTC on phones; batches of at "
        f"most {p['max_tokens'] / 16000:g} s of audio; best checkpoint by dev PER (validated "
        f"{f'every {v} updates' if (v := p['valid_every']) else 'at the end'});",
        f"- time masks p = {m['mask_prob']:g} × {m['mask_length']} frames, channel masks p = "
        f"{m['mask_channel_prob']:g} × {m['mask_channel_length']}, LayerDrop {m['layerdrop']:g}, "
        f"blank bias {p['blank_bias']:g} on the new head;",
        f"- seeds {', '.join(map(str, seeds))} (data order, masks, dropout, head initialisation); the random-weight "
        f"model is drawn once (seed {settings['random_init_seed']}) and then treated like a released checkpoint.",
    ])


# One piece (70 lines): report.md's text in reading order; split, the document would be scattered over helpers.
def write_report(result: DemoResult) -> Path:
    """DIR/report.md: the PER table and protocol, the analysis pictures and table, the live pretraining curve."""
    # Long because the Markdown template is written out in one piece, to read as the report reads.
    s = result.settings
    out = result.out_dir
    tgt = result.corpus[s["target"]]
    summary = summarize(result.finetune)
    key = lead_key(result.finetune)
    order = ranked(summary, key)
    lowest = init_name(order[0]) if summary[order[0]][key + "_mean"] is not None else "n/a (no finite PER)"
    ev = result.eval_set
    eval_note = (f" Held-out test set: {ev['utterances']} further utterances of `{s['target']}` ({ev['minutes']:.1f} "
                 f"min, {ev['speakers']} speakers synthesized with seed {s['eval_seed']} (a quarter share an espeak voice, "
                 f"at another pitch and rate, with training speakers), all its splits pooled; {ev['minutes'] / max(tgt['test'], 1e-9):.0f}x the test split's audio). The table leads "
                 f"with it: a test split this small cannot rank models a few points apart (docs/demo/investigation.md, "
                 f"twelfth round)." if key == "eval_per" and ev else "")
    on_split = (f" On the {tgt['test']:.1f}-min test split alone: {comparison(result.finetune, 'test_per', s['target'])}"
                if key == "eval_per" else "")
    files = result.analysis.get("files", {})
    pictures = "\n".join(f"![{name}](analysis/{files[name]})" for name in ("pca", "dendrogram", "similarity", "sharing")
                         if name in files)
    released = "\n".join(f"- `{Path(path).name}`: {path} (see its RECIPE.md)" for path in result.released.values())
    stage_times = " · ".join(f"{k} {duration(v)}" for k, v in result.seconds.items())
    first, last = result.pretrain.get("first", {}), result.pretrain.get("last", {})
    held_out = (f"; `{s['target']}` was held out of this checkpoint's pretraining and is placed among the others"
                if s.get("analysis_with_target") else "")
    mono = summary.get("monolingual", {}).get("init")
    other = another_monolingual(mono, s["target"]) if mono else ""
    not_paper = (f" The monolingual row is {other} (there is no monolingual release for the target here), so it is "
                 f"not the paper's monolingual baseline; `xlsr demo --full --target {s['target']}` builds "
                 f"`{monolingual_name(s['target'])}`." if other else "")
    read_langs = demo_audio_read(s, result.pretrain) if list(s["pretrain_langs"]) != list(result.release_langs) else ""
    how = protocol(result.finetune_config, s, result.finetune_lr) if result.finetune_config else ""
    per_init = rates_differ(result.finetune_lr)
    differ = "`init`, `seed` and the peak learning rate `lr`" if per_init else "`init` and `seed`"
    text = f"""# xlsr demo

Target language `{s['target']}`: {tgt['train']:.1f} min of labeled training audio, {tgt['dev']:.1f} min dev,
{tgt['test']:.1f} min test (synthesized with espeak-ng, seed {s['seed']}).{eval_note} Pretraining languages of the
multilingual checkpoint (its recipe.json): {', '.join(result.release_langs) or 'not recorded'}.{read_langs}

Released checkpoints used:
{released}

## 1. Fine-tuning on the target: phone error rate on held-out utterances

Three `tiny` models, differing only in their initialisation, each fine-tuned {len(s['finetune_seeds'])} times
(seeds {', '.join(map(str, s['finetune_seeds']))}) under one configuration{" but for each one's peak rate" if per_init else ""}: {s['finetune_updates']} updates of CTC
on the target's phones. Only {differ} differ between the runs' `finetune/*/seed*/config.yaml`:

{how}

The configuration is shaped for pretrained models, as fairseq's recipes are: it protects a pretrained
Transformer while the new head is random. The random-weight model follows the same protocol, although its
Transformer has nothing to protect; {f"only the peak rate, {rates_chosen(result.finetune_lr, s['target'])}," if per_init else "no setting"}
differs between the three.

{per_table(result.finetune, s['target'])}

Lowest mean {"held-out test" if key == "eval_per" else "test"} PER: **{lowest}**. {comparison(result.finetune, target=s['target'])}{on_split} Differences smaller than about twice
the seeds' sample standard deviation (n−1) are not findings. Every run is in demo.json. The paper's finding is that
multilingual pretraining beats monolingual pretraining on a low-resource language (spec §8.1).{not_paper}

## 2. Shared discrete units of the multilingual checkpoint

The quantizer run in eval mode over the same seconds of audio per language (`xlsr analyze`){held_out}.

```
{result.analysis.get('summary_table', '')}
```

{pictures}

## 3. A live pretraining run

`xlsr pretrain --recipe {result.pretrain.get('recipe')}` for {s['pretrain_updates']} updates on this demo's
corpus: loss {number(first.get('loss'))} → {number(last.get('loss'))} bits per masked frame, contrastive accuracy
{number(first.get('accuracy'), 3)} → {number(last.get('accuracy'), 3)}.

![live pretraining curve]({result.pretrain.get('curve', 'pretrain_curve.png')})

## Time

{stage_times}

Reproduce: `xlsr demo --out DIR` (or `make demo`; `--target LANG` for another target language);
`xlsr demo --full --out DIR` re-creates the released checkpoints first. Everything measured is in demo.json.
"""
    return write_text(out / "report.md", text)


def number(value, digits: int = 2) -> str:
    """A logged value with `digits` decimals, "?" when it was not logged."""
    return "?" if value is None else f"{value:.{digits}f}"
