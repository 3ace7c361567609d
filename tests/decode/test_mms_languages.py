"""`--target-lang` on transcribe and evaluate: one language of an MMS checkpoint, as transformers' load_adapter."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from xlsr.cli.main import main
from xlsr.data.audio import load_audio
from xlsr.decode.transcribe import load_ctc_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
from mms_fixtures import ENG, FRA, transformers, write_mms_dir  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mms(tmp_path_factory):
    """The MMS fixture with heads that emit symbols: 4x the weights, blank held back (random heads say blank)."""
    path = write_mms_dir(tmp_path_factory.mktemp("mms") / "mms-1b-all")
    for name in ("model.safetensors", "adapter.fra.safetensors"):
        state = load_file(path / name)
        state["lm_head.weight"] = state["lm_head.weight"] * 4
        state["lm_head.bias"][0] -= 3.0
        save_file(state, path / name, metadata={"format": "pt"})
    return path


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "u0.wav"
    rng, t = np.random.default_rng(3), np.arange(1500) / 16000
    parts = [0.3 * rng.standard_normal(1500), 0.5 * np.sin(2 * np.pi * 300 * t), np.zeros(1500),
             0.5 * np.sign(np.sin(2 * np.pi * 1900 * t))]  # noise, a tone, silence, a square wave
    sf.write(path, np.concatenate(parts).astype(np.float32), 16000)
    return path


def reference_tokens(mms: Path, lang: str, tokens: list[str], wav: Path, normalize: bool) -> list[str]:
    """Best path of transformers' logits after load_adapter(lang), as token strings (pad = blank)."""
    ref = transformers.Wav2Vec2ForCTC.from_pretrained(mms).eval()
    if lang != "eng":  # the base's own language
        ref.load_adapter(lang)
    x = torch.from_numpy(load_audio(wav, normalize=normalize))[None]
    with torch.no_grad():
        ids = ref(x).logits[0].argmax(-1).tolist()
    path = [i for k, i in enumerate(ids) if i != 0 and (k == 0 or ids[k - 1] != i)]
    return [tokens[i] for i in path]


@pytest.mark.parametrize("lang, tokens", [("fra", FRA), ("eng", ENG)])
def test_transcribe_with_a_language_decodes_its_adapters_and_vocabulary(mms, wav, tmp_path, lang, tokens):
    out = tmp_path / "out.jsonl"
    assert main(["transcribe", "--model", str(mms), "--target-lang", lang, str(wav), "--out", str(out),
                 "--no-progress"]) == 0
    got = json.loads(out.read_text())["tokens"]
    normalize = load_ctc_model(mms, target_lang=lang).normalize
    want = reference_tokens(mms, lang, tokens, wav, normalize)
    assert got == want and want  # symbols of this language's vocabulary ('é' is French only, 't' English only)


def test_evaluate_with_a_language_scores_its_transcripts(mms, wav, tmp_path, capsys):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text(json.dumps({"id": "u0", "audio": str(wav), "num_samples": 6000, "lang": "fra",
                                    "text": "sur rue"}) + "\n")
    hyps, report = tmp_path / "hyps.jsonl", tmp_path / "report.json"
    assert main(["evaluate", "--model", str(mms), "--target-lang", "fra", "--manifest", str(manifest),
                 "--labels", "chars", "--hyps", str(hyps), "--json", str(report), "--no-progress"]) == 0
    hyp = json.loads(hyps.read_text())["hyp"]
    ctc = load_ctc_model(mms, target_lang="fra")
    assert hyp == ctc.vocab.join(reference_tokens(mms, "fra", FRA, wav, ctc.normalize))
    assert json.loads(report.read_text())["languages"]["fra"]["cer"]["ref_len"] == 6
    assert "CER %" in capsys.readouterr().out


def test_without_a_language_or_with_an_unknown_one_is_one_line(mms, wav, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    commands = [["transcribe", "--model", str(mms), str(wav), "--out", str(out)],
                ["evaluate", "--model", str(mms), "--manifest", str(tmp_path / "none.jsonl"), "--json", str(out)]]
    for command in commands:
        for extra, expected in (([], "holds 2 languages; choose one with target_lang (--target-lang): eng, fra"),
                                (["--target-lang", "deu"], "no language 'deu'; available: eng, fra")):
            assert main([*command, *extra]) == 2
            err = capsys.readouterr().err
            assert err.startswith("xlsr: error: ") and expected in err and err.count("\n") == 1, err
    assert not out.exists()
