"""`synthesize_corpus`: a labeled multilingual speech corpus from espeak-ng, deterministic for a seed.

The whole corpus (texts, speakers, acoustic effects) is planned up front from the seed in the main process;
workers only render plans, so the result does not depend on the number of workers. By default it is a
realistic corpus: many speakers per language (the "varied" voices) and, on a share of utterances, speed
perturbation, room reverberation, noise and band-limiting (`augment.DEFAULT_AUGMENT`, docs/synth.md);
`voices="basic", augment="none", speakers_per_lang=10` is the clean corpus of earlier versions.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from xlsr.atomic import write_json
from xlsr.data.augment import (
    DEFAULT_AUGMENT,
    AugmentSpec,
    EffectDraw,
    apply_effects,
    draw_effects,
    item_key,
    parse_augment,
)
from xlsr.data.import_writer import MARK as IMPORT_MARK
from xlsr.data.import_writer import ImportRefused, imported_manifests
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.synth.babble import babble_talkers
from xlsr.data.synth.espeak import engine
from xlsr.data.synth.languages import LANGUAGES, Language, get_language, parse_languages
from xlsr.data.synth.phones import espeak_phones
from xlsr.data.synth.speakers import Speaker, make_speakers, speak, voice_variants
from xlsr.data.synth.text import sample_text, word_list
from xlsr.errors import XlsrError, require_seed
from xlsr.jsonl import parse_json
from xlsr.progress import progress
from xlsr.rates import SAMPLE_RATE

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
MAX_WORDS_PER_UTT = 200  # words of one utterance: over a minute of speech
SPLIT_SHARES = (0.8, 0.1, 0.1)
SPEAKERS_PER_LANG = 40  # default: 32 train, 4 dev, 4 test speakers per language
PENDING = ".synth.pending.json"  # DIR/.synth.pending.json: the languages of a call whose manifests are being written


@dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to render one utterance."""

    id: str
    lang: str
    split: str
    speaker: Speaker
    text: str
    noise_snr_db: float | None
    noise_seed: int
    effects: EffectDraw | None = None  # speed, room, noise, channel (augment.draw_effects)


@dataclass
class SynthSummary:
    """What `synthesize_corpus` wrote."""

    out_dir: str
    utterances: dict[str, dict[str, int]] = field(default_factory=dict)  # lang -> split -> count
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # lang -> split -> audio seconds
    speakers: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # lang -> split -> ids
    effects: dict[str, int] = field(default_factory=dict)  # effect -> utterances it was applied to ("none": clean)
    audio_seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time spent rendering (all workers)
    wall_seconds: float = 0.0

    @property
    def realtime_per_core(self) -> float:
        """Seconds of audio produced per CPU-second of rendering."""
        return self.audio_seconds / max(self.cpu_seconds, 1e-9)

    def add(self, plan: UtterancePlan, seconds: float, cpu_seconds: float) -> None:
        """Count one rendered utterance."""
        self.utterances.setdefault(plan.lang, {}).setdefault(plan.split, 0)
        self.utterances[plan.lang][plan.split] += 1
        self.seconds.setdefault(plan.lang, {}).setdefault(plan.split, 0.0)
        self.seconds[plan.lang][plan.split] += seconds
        speakers = self.speakers.setdefault(plan.lang, {}).setdefault(plan.split, [])
        if plan.speaker.id not in speakers:
            speakers.append(plan.speaker.id)
        self.audio_seconds += seconds
        self.cpu_seconds += cpu_seconds
        for name in applied_effects(plan.effects):
            self.effects[name] = self.effects.get(name, 0) + 1

    def speaker_counts(self) -> dict[str, int]:
        """Distinct speakers per split, over all languages (speakers never cross splits)."""
        return {split: sum(len(by_split.get(split, [])) for by_split in self.speakers.values()) for split in SPLITS}


def split_counts(total: int) -> dict[str, int]:
    """Utterances per split, 80/10/10, with at least one in dev and test."""
    if total < len(SPLITS):
        raise XlsrError(f"--utts-per-lang: need at least {len(SPLITS)} utterances per language, got {total}")
    dev = max(1, round(total * SPLIT_SHARES[1]))
    test = max(1, round(total * SPLIT_SHARES[2]))
    return {"train": total - dev - test, "dev": dev, "test": test}


def split_speakers(speakers: list[Speaker]) -> dict[str, list[Speaker]]:
    """Disjoint speaker sets per split, 80/10/10, at least one each."""
    counts = split_counts(len(speakers))
    out, start = {}, 0
    for split in SPLITS:
        out[split] = speakers[start:start + counts[split]]
        start += counts[split]
    return out


def plan_corpus(langs: list[Language], utts_per_lang: int, seed: int, *, speakers_per_lang: int = 10,
                words_per_utt: tuple[int, int] = (4, 12), noise_snr_db: float | None = None,
                voices: str = "basic", augment: AugmentSpec | None = None) -> list[UtterancePlan]:
    """The deterministic plan of every utterance: text, speaker, split, noise, effects."""
    if speakers_per_lang < len(SPLITS):
        raise XlsrError(f"--speakers-per-lang: need at least {len(SPLITS)}, got {speakers_per_lang}")
    lo, hi = words_per_utt
    if not 1 <= lo <= hi:
        raise XlsrError(f"--words-per-utt: need 1 <= min <= max, got {lo}-{hi}")
    if hi > MAX_WORDS_PER_UTT:  # a million words was one utterance rendered for minutes, until memory ran out
        raise XlsrError(f"--words-per-utt: at most {MAX_WORDS_PER_UTT} words an utterance (over a minute of speech), "
                        f"got {lo}-{hi}")
    plans = []
    for lang in langs:
        # One generator per language, so adding a language does not change the others' plans (texts, speakers,
        # effect draws). It can change their audio: babble noise's background talkers come from the call's languages
        # in their order (`render`'s babble_key), so an utterance drawn to get babble sounds different with another
        # language list (docs/synth.md, Babble); the other effects and plain speech do not depend on it.
        rng = np.random.default_rng([seed, sorted(LANGUAGES).index(lang.code)])
        noise_rng = np.random.default_rng([seed, sorted(LANGUAGES).index(lang.code), 1])  # texts same with/without noise
        by_split = split_speakers(make_speakers(lang, speakers_per_lang, rng, voices))
        for split, count in split_counts(utts_per_lang).items():
            speakers = by_split[split]
            for i in range(count):
                snr = None if noise_snr_db is None else float(noise_snr_db + noise_rng.uniform(-5, 5))
                uid = f"{lang.code}-{split}-{i:05d}"
                # effects keyed on (seed, id): the same texts and speakers whichever effects are asked for
                effects = None if augment is None else draw_effects(augment, item_key(seed, uid), room_seed=seed)
                plans.append(UtterancePlan(
                    id=uid, lang=lang.code, split=split,
                    speaker=speakers[i % len(speakers)],
                    text=sample_text(lang.code, rng, int(rng.integers(lo, hi + 1))),
                    noise_snr_db=snr, noise_seed=int(rng.integers(2**31)), effects=effects,
                ))
    return plans


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """x plus white Gaussian noise at `snr_db` relative to x's power, clipped to [-1, 1]."""
    power = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(x + noise, -1.0, 1.0).astype(np.float32)


def render(plan: UtterancePlan, out_dir: str, babble_key: tuple[int, tuple[str, ...]]) -> tuple[dict, float]:
    """Synthesize one planned utterance to DIR/<lang>/audio/<id>.flac: (manifest record, CPU seconds).

    `babble_key` (seed, languages) picks the background talkers for babble noise (`babble_talkers`)."""
    t0 = time.process_time()
    lang = get_language(plan.lang)
    x = speak(plan.speaker, plan.text, seed=plan.noise_seed)
    if len(x) == 0:
        raise XlsrError(f"{plan.id}: espeak-ng produced no audio for {plan.text!r}")
    espeak = engine()  # phonemize now: babble talkers below may switch the engine to another voice
    phones = espeak_phones(espeak.phonemize(plan.text),
                           espeak.phonemize(plan.text, ipa=False) if lang.tones else None, lang)
    if plan.effects is not None:
        babble = babble_talkers(*babble_key) if plan.effects.noise_kind == "babble" else None
        x = apply_effects(x, plan.effects, babble=list(babble) if babble else None)
    if plan.noise_snr_db is not None:
        x = add_noise(x, plan.noise_snr_db, np.random.default_rng(plan.noise_seed))
    path = Path(out_dir) / plan.lang / "audio" / f"{plan.id}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    record = {"id": plan.id, "audio": str(path), "num_samples": len(x), "lang": plan.lang,
              "speaker": plan.speaker.id, "text": plan.text, "phones": " ".join(phones)}
    return record, time.process_time() - t0


def applied_effects(draw: EffectDraw | None) -> list[str]:
    """Names of the effects in a draw (["none"] for a clean utterance), for the summary."""
    if draw is None:
        return ["none"]
    names = {"speed": draw.speed, "reverb": draw.room, "noise": draw.noise_kind, "bandlimit": draw.band_hz}
    return [name for name, value in names.items() if value is not None]


def _ignore_ctrl_c() -> None:
    """Pool initializer: Ctrl-C reaches every process of the terminal's group; the parent alone stops, and stops the
    workers (Pool.terminate), so that no worker prints its own KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool_born_ignoring_ctrl_c(workers: int):
    """A spawn Pool whose workers ignore Ctrl-C from their first instruction: started while this process ignores it
    (a process started so keeps ignoring it, and Python then installs no handler of its own), since a Ctrl-C during a
    worker's imports, before `_ignore_ctrl_c` runs, printed its traceback. This process ignores it only while the
    workers are started (Pool returns before their imports)."""
    main = threading.current_thread() is threading.main_thread()  # signals can be set there only
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        return multiprocessing.get_context("spawn").Pool(workers, initializer=_ignore_ctrl_c)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _render_star(job: tuple[UtterancePlan, str, tuple[int, tuple[str, ...]]]) -> tuple[dict, float]:
    return render(*job)


def synthesize_corpus(out_dir: str | Path, langs: list[str] | str, utts_per_lang: int, seed: int = 0,
                      workers: int = 1, noise: float | None = None, *, speakers_per_lang: int = SPEAKERS_PER_LANG,
                      words_per_utt: tuple[int, int] = (4, 12), voices: str = "varied",
                      augment: str | AugmentSpec = DEFAULT_AUGMENT, show_progress: bool = True) -> SynthSummary:
    """Synthesize `utts_per_lang` utterances per language into DIR/<lang>/{train,dev,test}.jsonl + audio/.

    `langs`: codes (list or "es,it,de" or "all"). Splits are 80/10/10 with disjoint speakers.
    `voices`: "varied" (120 voices) or "basic" (espeak's 12 variants); `augment`: effects on a share of
    utterances (`xlsr.data.augment`, "none" for clean audio); `noise`: SNR in dB of additive white noise on
    every utterance (±5 dB per utterance, after `augment`), None for none.
    `voices="basic", augment="none", speakers_per_lang=10` is the clean corpus of earlier versions.
    """
    start = time.perf_counter()
    languages = parse_languages(langs if isinstance(langs, str) else ",".join(langs))
    require_seed(seed)  # the library's callers (the demo's settings, the release recipes) as well as the CLI's
    spec = _check_options(languages, workers, voices, augment)
    plans = plan_corpus(languages, utts_per_lang, seed, speakers_per_lang=speakers_per_lang,
                        words_per_utt=words_per_utt, noise_snr_db=noise, voices=voices,
                        augment=spec if spec.enabled else None)
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise XlsrError(f"{out_dir}: exists and is not a folder (--out)")
    _check_out(Path(out_dir), languages)
    _check_in_the_way(Path(out_dir), languages)
    out.mkdir(parents=True, exist_ok=True)
    _withdraw_manifests(out, languages)
    babble_key = (seed, tuple(lang.code for lang in languages))
    results = _render_all([(p, str(out), babble_key) for p in plans], workers, show_progress)
    # names the languages whose manifests are written until synth.json lists them: a rerun after a stop takes them
    # for synth's own (_check_out)
    codes = [lang.code for lang in languages]
    earlier = [code for code in _pending(out) or [] if code not in codes]  # another call's, stopped
    write_json(out / PENDING, earlier + codes)
    summary = _write_manifests(out, plans, results)
    summary.wall_seconds = time.perf_counter() - start
    options = {"seed": seed, "utts_per_lang": utts_per_lang, "noise_snr_db": noise,
               "speakers_per_lang": speakers_per_lang, "words_per_utt": list(words_per_utt), "voices": voices,
               "augment": str(spec)}
    record = folder_record(out, _read_record(out / "synth.json"), call_record(languages, options, plans, summary))
    write_json(out / "synth.json", record, indent=1)  # a kill or a full disk midway must not lose earlier calls' entries
    if earlier:
        write_json(out / PENDING, earlier)
    else:
        (out / PENDING).unlink()
    _remove_stale_audio(out, languages, plans)
    return summary


def _withdraw_manifests(out: Path, languages: list[Language]) -> None:
    """Remove the manifests of the languages about to be written (synth's own: `_check_out`) before their audio is
    overwritten: a call stopped midway (a kill, a failed utterance) then leaves no manifest whose lines name audio of
    another call (another seed, other options), nor a file cut short; running it again writes them."""
    for lang in languages:
        for split in SPLITS:
            (out / lang.code / f"{split}.jsonl").unlink(missing_ok=True)


def _remove_stale_audio(out: Path, languages: list[Language], plans: list[UtterancePlan]) -> None:
    """Remove the audio an earlier call synthesized for these languages that this call's manifests no longer list
    (a rerun with fewer utterances): only files named as synth names its own (<lang>-<split>-<5 digits>.flac), and
    none that a manifest anywhere in DIR names (a user's subset beside synth's, `xlsr data normalize-text --out
    DIR/normalized`); anything else in the audio folders is left as it is."""
    kept, stale = {plan.id for plan in plans}, []
    for lang in languages:
        own = re.compile(rf"{re.escape(lang.code)}-(?:{'|'.join(SPLITS)})-\d{{5}}\.flac")
        audio = out / lang.code / "audio"
        stale += [f for f in audio.iterdir() if own.fullmatch(f.name) and f.stem not in kept] if audio.is_dir() else []
    if not stale:
        return
    codes = "|".join(re.escape(lang.code) for lang in languages)
    listed = _named_in_manifests(out, re.compile(rf"(?:{codes})-(?:{'|'.join(SPLITS)})-\d{{5}}\.flac"))
    if listed is None:
        log.info("%s: kept %d audio files of an earlier, larger synthesis: a manifest in it cannot be read", out,
                 len(stale))
        return
    removed = [f for f in stale if f.name not in listed]
    for f in removed:
        f.unlink(missing_ok=True)
    if removed:
        log.info("%s: removed %d audio files of an earlier, larger synthesis that no manifest lists now", out,
                 len(removed))
    if len(removed) < len(stale):
        log.info("%s: kept %d audio files of an earlier, larger synthesis that a manifest in it still names", out,
                 len(stale) - len(removed))


def _named_in_manifests(out: Path, names: re.Pattern) -> set[str] | None:
    """The file names matching `names` that the .jsonl files anywhere in `out` hold, None when one cannot be read."""
    found: set[str] = set()
    for manifest in out.rglob("*.jsonl"):
        try:
            found.update(names.findall(manifest.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            return None
    return found


# What synth.json says about each language besides its options: the languages synthesized in the same call (their
# babble talkers are behind its noisy utterances) and how many of its utterances got each effect.
SUMMARY_KEYS = ("utterances", "seconds", "speakers")  # SynthSummary's per-language fields


def call_record(languages: list[Language], options: dict, plans: list[UtterancePlan], summary: SynthSummary) -> dict:
    """synth.json's entry for each language of one `synthesize_corpus` call: its options and counts."""
    record = {}
    for lang in languages:
        effects: dict[str, int] = {}
        for plan in plans:
            if plan.lang == lang.code:
                for name in applied_effects(plan.effects):
                    effects[name] = effects.get(name, 0) + 1
        record[lang.code] = {"name": lang.name, "family": lang.family, "voice": lang.voice, **options,
                             "synthesized_with": [x.code for x in languages], "effects": effects,
                             **{key: getattr(summary, key)[lang.code] for key in SUMMARY_KEYS}}
    return record


def folder_record(out: Path, previous: dict | None, call: dict) -> dict:
    """synth.json for the whole folder after a call (`call_record`) into it: the languages an earlier call wrote that
    are still there (and not written again) are kept, so two calls into one folder (the demo's target, then its other
    languages) are both described. The top-level options are those every language shares, null where they differ
    (each language's own are under `languages`); `summary` counts every language."""
    kept = {}
    for code, entry in _languages_of(previous).items():
        if code not in call and any((out / code / f"{split}.jsonl").is_file() for split in SPLITS):
            kept[code] = entry
    languages = {**kept, **call}
    options = {key: _shared([entry.get(key) for entry in languages.values()])
               for key in ("seed", "utts_per_lang", "noise_snr_db", "speakers_per_lang", "words_per_utt", "voices",
                           "augment")}
    effects: dict[str, int] | None = {}
    for entry in languages.values():
        if entry.get("effects") is None:  # kept from a synth.json written before effects were counted per language
            effects = None
            break
        for name, count in entry["effects"].items():
            effects[name] = effects.get(name, 0) + count
    summary = {"out_dir": str(out),
               **{key: {code: entry.get(key, {}) for code, entry in languages.items()} for key in SUMMARY_KEYS},
               "effects": effects,
               "audio_seconds": sum(sum(entry.get("seconds", {}).values()) for entry in languages.values())}
    return {**options, "languages": {code: {k: v for k, v in entry.items() if k not in SUMMARY_KEYS}
                                     for code, entry in languages.items()}, "summary": summary}


def _shared(values: list):
    """The one value all of `values` have, else None."""
    return values[0] if values and all(v == values[0] for v in values) else None


def _read_record(path: Path) -> dict | None:
    """An earlier synth.json, None when there is none or it is unreadable (then it is simply replaced)."""
    try:
        record = parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _languages_of(record: dict | None) -> dict[str, dict]:
    """Each language of a synth.json with its options and counts, as `call_record` gives them; a record written before
    synth.json held them per language (one call) gets its top-level options and that call's languages."""
    if not record or not isinstance(record.get("languages"), dict):
        return {}
    summary = record.get("summary") or {}
    options = {key: record.get(key) for key in ("seed", "utts_per_lang", "noise_snr_db", "speakers_per_lang",
                                                "words_per_utt", "voices", "augment")}
    out = {}
    for code, entry in record["languages"].items():
        counts = {key: (summary.get(key) or {}).get(code, {}) for key in SUMMARY_KEYS}
        if isinstance(entry, dict) and "synthesized_with" in entry:
            out[code] = {**entry, **counts}
        else:
            out[code] = {**(entry if isinstance(entry, dict) else {}), **options,
                         "synthesized_with": list(record["languages"]), "effects": None, **counts}
    return out


def _check_out(out_dir: Path, languages: list[Language]) -> None:
    """XlsrError when a language to write has manifests in DIR that synth did not write, which it would overwrite:
    a language synth.json does not list (the languages of a call stopped before it wrote synth.json count as
    listed), or whose manifests an import wrote since (DIR/import.json lists them). Other languages' manifests, an
    import's or a user's, are left as they are and do not stop it."""
    held = sorted(out_dir.glob("*/*.jsonl"))
    if not held:
        return
    record, pending = _read_record(out_dir / "synth.json"), _pending(out_dir)
    ours = {*_languages_of(record), *(pending or [])}
    try:
        imported = imported_manifests(out_dir)
    except ImportRefused:  # an import.json that is no import's: it lists nothing of an import's
        imported = set()
    for lang in languages:
        for path in (p for p in held if p.parent.name == lang.code):
            rel = path.relative_to(out_dir).as_posix()
            if rel in imported:
                raise XlsrError(f"--out {out_dir}: {rel} is a manifest an import wrote ({out_dir / IMPORT_MARK} lists "
                                f"it), and synthesizing {lang.code} would overwrite it; synthesize into another "
                                f"folder, or leave {lang.code} out")
            if lang.code not in ours:
                why = f"synth.json does not list {lang.code}" if record is not None else "the folder has no synth.json"
                raise XlsrError(f"--out {out_dir}: {rel} is not a manifest xlsr synth wrote ({why}), and synthesizing "
                                f"{lang.code} would overwrite it; synthesize into another folder, or leave "
                                f"{lang.code} out")


def _check_in_the_way(out_dir: Path, languages: list[Language]) -> None:
    """XlsrError before anything is written when a file stands where synth writes a folder (DIR/<lang>,
    DIR/<lang>/audio) or a folder where it writes a file (DIR/synth.json, a manifest): nothing of it is touched."""
    folders = [Path(code) for lang in languages for code in (lang.code, f"{lang.code}/audio")]
    files = [Path("synth.json")] + [Path(lang.code) / f"{split}.jsonl" for lang in languages for split in SPLITS]
    for rel in folders:
        if (out_dir / rel).exists() and not (out_dir / rel).is_dir():
            raise XlsrError(f"--out {out_dir}: {rel.as_posix()} is a file where synth writes a folder; move it, or "
                            f"synthesize into another folder")
    for rel in files:
        if (out_dir / rel).is_dir():
            raise XlsrError(f"--out {out_dir}: {rel.as_posix()} is a folder where synth writes a file; move it, or "
                            f"synthesize into another folder")


def _pending(out_dir: Path) -> list[str] | None:
    """The languages DIR/.synth.pending.json names (a call stopped while writing their manifests), None if none."""
    try:
        codes = parse_json((out_dir / PENDING).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [c for c in codes if isinstance(c, str)] if isinstance(codes, list) else None


def _check_options(languages: list[Language], workers: int, voices: str, augment: str | AugmentSpec) -> AugmentSpec:
    """Reject bad options before any audio is written; the parsed augmentation spec."""
    if workers < 1:
        raise XlsrError(f"--workers must be at least 1, got {workers}")
    spec = parse_augment(augment)
    voice_variants(voices)
    for lang in languages:
        word_list(lang.code)
    return spec


def _render_all(jobs: list[tuple[UtterancePlan, str, tuple[int, tuple[str, ...]]]], workers: int,
                show_progress: bool) -> list[tuple[dict, float]]:
    """Render every job, in job order, in this process or a pool of `workers`."""
    bar = progress(total=len(jobs), desc="synth", unit="utt", disable=not show_progress)
    results = []
    try:
        if workers == 1:
            for job in jobs:
                results.append(_render_star(job))
                bar.update(1)
        else:
            # spawn: each worker gets a fresh espeak-ng (the library is global state, not fork/thread safe).
            with _pool_born_ignoring_ctrl_c(workers) as pool:
                for result in pool.imap(_render_star, jobs, chunksize=4):
                    results.append(result)
                    bar.update(1)
    finally:  # on a stop or an error too: the bar ends its line, and the error's line comes after it, once
        bar.close()
    return results


def _write_manifests(out: Path, plans: list[UtterancePlan], results: list[tuple[dict, float]]) -> SynthSummary:
    """Write DIR/<lang>/<split>.jsonl from the rendered records and count them."""
    summary = SynthSummary(out_dir=str(out))
    manifests: dict[tuple[str, str], list[Utterance]] = {}
    for plan, (record, cpu) in zip(plans, results):
        manifests.setdefault((plan.lang, plan.split), []).append(Utterance(**record))
        summary.add(plan, record["num_samples"] / SAMPLE_RATE, cpu)
    for (lang, split), utts in manifests.items():
        write_manifest(out / lang / f"{split}.jsonl", utts)
    return summary
