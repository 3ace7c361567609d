"""`synthesize_corpus`: a labeled multilingual speech corpus from espeak-ng, deterministic for a seed.

The whole corpus (texts, speakers, noise seeds) is planned up front from the seed in the main process;
workers only render plans, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from xlsr.data.audio import SAMPLE_RATE
from xlsr.data.manifest import Utterance, write_manifest
from xlsr.data.synth.espeak import ESPEAK_SAMPLE_RATE, engine
from xlsr.data.synth.languages import LANGUAGES, Language, get_language
from xlsr.data.synth.phones import espeak_phones
from xlsr.data.synth.speakers import Speaker, make_speakers
from xlsr.data.synth.text import sample_text, word_list
from xlsr.errors import XlsrError
from xlsr.progress import progress

SPLITS = ("train", "dev", "test")
SPLIT_SHARES = (0.8, 0.1, 0.1)


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


@dataclass
class SynthSummary:
    """What `synthesize_corpus` wrote."""

    out_dir: str
    utterances: dict[str, dict[str, int]] = field(default_factory=dict)  # lang -> split -> count
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)  # lang -> split -> audio seconds
    speakers: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # lang -> split -> ids
    audio_seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time spent rendering (all workers)
    wall_seconds: float = 0.0

    @property
    def realtime_per_core(self) -> float:
        """Seconds of audio produced per CPU-second of rendering."""
        return self.audio_seconds / max(self.cpu_seconds, 1e-9)


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
                words_per_utt: tuple[int, int] = (4, 12), noise_snr_db: float | None = None) -> list[UtterancePlan]:
    """The deterministic plan of every utterance: text, speaker, split, noise."""
    if speakers_per_lang < len(SPLITS):
        raise XlsrError(f"--speakers-per-lang: need at least {len(SPLITS)}, got {speakers_per_lang}")
    lo, hi = words_per_utt
    if not 1 <= lo <= hi:
        raise XlsrError(f"--words-per-utt: need 1 <= min <= max, got {lo}-{hi}")
    plans = []
    for lang in langs:
        # One generator per language, so adding a language does not change the others.
        rng = np.random.default_rng([seed, sorted(LANGUAGES).index(lang.code)])
        noise_rng = np.random.default_rng([seed, sorted(LANGUAGES).index(lang.code), 1])  # texts same with/without noise
        by_split = split_speakers(make_speakers(lang, speakers_per_lang, rng))
        for split, count in split_counts(utts_per_lang).items():
            speakers = by_split[split]
            for i in range(count):
                snr = None if noise_snr_db is None else float(noise_snr_db + noise_rng.uniform(-5, 5))
                plans.append(UtterancePlan(
                    id=f"{lang.code}-{split}-{i:05d}", lang=lang.code, split=split,
                    speaker=speakers[i % len(speakers)],
                    text=sample_text(lang.code, rng, int(rng.integers(lo, hi + 1))),
                    noise_snr_db=snr, noise_seed=int(rng.integers(2**31)),
                ))
    return plans


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """x plus white Gaussian noise at `snr_db` relative to x's power, clipped to [-1, 1]."""
    power = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(x + noise, -1.0, 1.0).astype(np.float32)


def render(plan: UtterancePlan, out_dir: str) -> tuple[dict, float]:
    """Synthesize one planned utterance to DIR/<lang>/audio/<id>.flac: (manifest record, CPU seconds)."""
    t0 = time.process_time()
    lang = get_language(plan.lang)
    espeak = engine()
    espeak.set_voice(plan.speaker.voice)
    espeak.set_prosody(rate=plan.speaker.rate, pitch=plan.speaker.pitch, pitch_range=plan.speaker.pitch_range)
    pcm = espeak.synthesize(plan.text, seed=plan.noise_seed)
    if len(pcm) == 0:
        raise XlsrError(f"{plan.id}: espeak-ng produced no audio for {plan.text!r}")
    x = soxr.resample(pcm.astype(np.float32) / 32768.0, ESPEAK_SAMPLE_RATE, SAMPLE_RATE)
    if plan.noise_snr_db is not None:
        x = add_noise(x, plan.noise_snr_db, np.random.default_rng(plan.noise_seed))
    phones = espeak_phones(espeak.phonemize(plan.text),
                           espeak.phonemize(plan.text, ipa=False) if lang.tones else None, lang)
    path = Path(out_dir) / plan.lang / "audio" / f"{plan.id}.flac"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    record = {"id": plan.id, "audio": str(path), "num_samples": len(x), "lang": plan.lang,
              "speaker": plan.speaker.id, "text": plan.text, "phones": " ".join(phones)}
    return record, time.process_time() - t0


def _render_star(job: tuple[UtterancePlan, str]) -> tuple[dict, float]:
    return render(*job)


def synthesize_corpus(out_dir: str | Path, langs: list[str] | str, utts_per_lang: int, seed: int = 0,
                      workers: int = 1, noise: float | None = None, *, speakers_per_lang: int = 10,
                      words_per_utt: tuple[int, int] = (4, 12), show_progress: bool = True) -> SynthSummary:
    """Synthesize `utts_per_lang` utterances per language into DIR/<lang>/{train,dev,test}.jsonl + audio/.

    `langs`: codes (list or "es,it,de" or "all"); `noise`: SNR in dB of additive white noise (±5 dB per
    utterance), None for clean audio. Splits are 80/10/10 with disjoint speakers.
    """
    from xlsr.data.synth.languages import parse_languages

    start = time.perf_counter()
    languages = parse_languages(langs if isinstance(langs, str) else ",".join(langs))
    if workers < 1:
        raise XlsrError(f"--workers must be at least 1, got {workers}")
    for lang in languages:
        word_list(lang.code)  # fail on a bad word list before any audio is written
    plans = plan_corpus(languages, utts_per_lang, seed, speakers_per_lang=speakers_per_lang,
                        words_per_utt=words_per_utt, noise_snr_db=noise)
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise XlsrError(f"{out_dir}: exists and is not a folder (--out)")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(p, str(out)) for p in plans]
    bar = progress(total=len(jobs), desc="synth", unit="utt", disable=not show_progress)
    results = []
    if workers == 1:
        for job in jobs:
            results.append(_render_star(job))
            bar.update(1)
    else:
        # spawn: each worker gets a fresh espeak-ng (the library is global state, not fork/thread safe).
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for result in pool.imap(_render_star, jobs, chunksize=4):
                results.append(result)
                bar.update(1)
    bar.close()

    summary = SynthSummary(out_dir=str(out))
    manifests: dict[tuple[str, str], list[Utterance]] = {}
    for plan, (record, cpu) in zip(plans, results):
        manifests.setdefault((plan.lang, plan.split), []).append(Utterance(**record))
        seconds = record["num_samples"] / SAMPLE_RATE
        summary.utterances.setdefault(plan.lang, {}).setdefault(plan.split, 0)
        summary.utterances[plan.lang][plan.split] += 1
        summary.seconds.setdefault(plan.lang, {}).setdefault(plan.split, 0.0)
        summary.seconds[plan.lang][plan.split] += seconds
        spk = summary.speakers.setdefault(plan.lang, {}).setdefault(plan.split, [])
        if plan.speaker.id not in spk:
            spk.append(plan.speaker.id)
        summary.audio_seconds += seconds
        summary.cpu_seconds += cpu
    for (lang, split), utts in manifests.items():
        write_manifest(out / lang / f"{split}.jsonl", utts)
    summary.wall_seconds = time.perf_counter() - start
    record = {"seed": seed, "utts_per_lang": utts_per_lang, "noise_snr_db": noise,
              "speakers_per_lang": speakers_per_lang, "words_per_utt": list(words_per_utt),
              "languages": {lang.code: {"name": lang.name, "family": lang.family, "voice": lang.voice}
                            for lang in languages},
              "summary": {k: v for k, v in asdict(summary).items() if k not in ("cpu_seconds", "wall_seconds")}}
    (out / "synth.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
