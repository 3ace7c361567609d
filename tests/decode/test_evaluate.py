"""Evaluation: per-language S/D/I counts against hand-counted alignments, table, JSON, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _constant_ctc import constant_model as constant_ctc

from xlsr.cli.main import main
from xlsr.data.manifest import read_manifest
from xlsr.decode.evaluate import EvalReport, evaluate, read_manifests
from xlsr.decode.lm_sweep import rank_settings
from xlsr.decode.transcribe import load_ctc_model
from xlsr.errors import XlsrError
from xlsr.text.metrics import EditCounts


def constant_model(tmp_path: Path, vocab: list[str], token: str, labels: str) -> Path:
    """A CTC model whose every frame says `token`: its transcript of any audio is exactly `token`."""
    return constant_ctc(tmp_path / f"const-{labels}", vocab, token, labels)


def manifest(tmp_path: Path, rows: list[dict]) -> Path:
    lines = []
    for k, row in enumerate(rows):
        wav = tmp_path / f"u{k}.wav"
        sf.write(wav, 0.1 * np.sin(np.arange(8000) / 5.0).astype(np.float32), 16000)
        lines.append(json.dumps({"id": f"u{k}", "audio": wav.name, "num_samples": 8000, **row}))
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_phone_error_counts_per_language(tmp_path):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "i", "u"], "a", "phones")
    m = manifest(tmp_path, [
        {"lang": "xx", "phones": "a i u"},        # hyp "a": D=2, N=3
        {"lang": "xx", "phones": "i | u"},        # "|" not counted: S=1 D=1, N=2
        {"lang": "yy", "phones": "u"},            # S=1, N=1
        {"lang": "yy", "phones": "e a"},          # "e" not in the vocabulary: D=1, N=2
        {"lang": "yy", "text": "no phones"},      # no reference: skipped
    ])
    report = evaluate(load_ctc_model(ckpt), read_manifests([m]), show_progress=False)
    listed = evaluate(load_ctc_model(ckpt), read_manifest(m), show_progress=False)  # utterance objects
    assert listed.to_dict() == report.to_dict() and listed.hypotheses == report.hypotheses
    c = report.counts
    assert (c["xx"]["phone"].substitutions, c["xx"]["phone"].deletions, c["xx"]["phone"].insertions,
            c["xx"]["phone"].ref_len) == (1, 3, 0, 5)
    assert (c["yy"]["phone"].substitutions, c["yy"]["phone"].deletions, c["yy"]["phone"].ref_len) == (1, 1, 3)
    assert report.rate(None, "phone") == pytest.approx(6 / 8)
    assert report.utterances == {"xx": 2, "yy": 2} and report.total_utterances == 4
    assert report.no_reference == ["u4"] and report.oov == {"e": 1}
    table = report.table()
    assert "PER %" in table and table.splitlines()[-1].split()[:3] == ["total", "4", "75.00"]


def test_char_model_gets_cer_and_wer_and_cli_json(tmp_path, capsys):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "b"], "a", "chars")
    m = manifest(tmp_path, [{"lang": "zz", "text": "ab ba"}, {"lang": "zz", "text": "a"}])
    out = tmp_path / "report.json"
    code = main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--json", str(out), "--no-progress"])
    assert code == 0
    data = json.loads(out.read_text())
    cer, wer = data["languages"]["zz"]["cer"], data["languages"]["zz"]["wer"]
    # "ab ba" vs "a": chars a,b,b,a (space excluded) -> 3 deletions; words [ab, ba] vs [a] -> S=1, D=1.
    assert (cer["substitutions"], cer["deletions"], cer["insertions"], cer["ref_len"]) == (0, 3, 0, 5)
    assert (wer["substitutions"], wer["deletions"], wer["ref_len"]) == (1, 1, 3)
    assert "CER %" in capsys.readouterr().out


def test_missing_references_and_unreadable_audio(tmp_path, capsys):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "a"], "a", "phones")
    m = manifest(tmp_path, [{"lang": "xx", "text": "only text"}])
    with pytest.raises(XlsrError, match="no utterance has a 'phones' reference"):
        evaluate(load_ctc_model(ckpt), read_manifests([m]), show_progress=False)
    m = manifest(tmp_path, [{"lang": "xx", "phones": "a"}, {"lang": "xx", "phones": "a a"}])
    (tmp_path / "u1.wav").write_bytes(b"garbage")
    code = main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1 and "u1.wav: not a readable audio file" in captured.err
    assert captured.out.splitlines()[-1].split()[:3] == ["total", "1", "0.00"]
    m.write_text(m.read_text() + '{"audio": "u0.wav", "lang": "xx"}\n')
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "test.jsonl:3: missing field(s) num_samples" in err and "\n" not in err


def test_labels_of_another_kind_than_the_model_warn(tmp_path, capsys):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "a"], "a", "phones")
    m = manifest(tmp_path, [{"lang": "xx", "phones": "a", "text": "a"}])
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--labels", "chars", "--no-progress"]) == 0
    assert "warning: the model predicts phones; --labels chars" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--labels", "phones", "--no-progress"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_normalize_text_scores_lower_case_without_punctuation(tmp_path, capsys):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "b"], "a", "chars")
    m = manifest(tmp_path, [{"lang": "zz", "text": "A."}])
    raw = evaluate(load_ctc_model(ckpt), read_manifests([m]), show_progress=False)
    assert raw.counts["zz"]["char"].rate == 1.0 and raw.oov == {"A": 1, ".": 1}  # 'A' and '.' against 'a'
    norm = evaluate(load_ctc_model(ckpt), read_manifests([m]), show_progress=False, normalize=True)
    assert norm.counts["zz"]["char"].rate == 0.0 and norm.counts["zz"]["word"].rate == 0.0 and norm.oov == {}
    assert norm.hypotheses == [{"id": "u0", "lang": "zz", "ref": "a", "hyp": "a"}]
    phones = constant_model(tmp_path / "p", ["<blank>", "<unk>", "a"], "a", "phones")
    m = manifest(tmp_path, [{"lang": "zz", "phones": "a"}])
    assert main(["evaluate", "--model", str(phones), "--manifest", str(m), "--normalize-text", "--no-progress"]) == 2
    assert "--normalize-text: applies to character labels" in capsys.readouterr().err


def test_sweep_ranks_ties_by_the_secondary_metric():
    def report(char_errors, word_errors):
        counts = {"char": EditCounts(substitutions=char_errors, ref_len=100),
                  "word": EditCounts(substitutions=word_errors, ref_len=20)}
        return EvalReport("m", "chars", {"zz": counts}, {"zz": 1})
    rows = [(0.0, 0.0, report(9, 2)), (1.0, 0.0, report(5, 2)), (2.0, 0.0, report(1, 3)), (3.0, 0.0, report(5, 2))]
    # WER first; on a WER tie the lower CER; equal rows keep their grid order
    assert [w for w, _, _ in rank_settings(rows)] == [1.0, 3.0, 0.0, 2.0]


def test_a_language_coded_all_is_counted_once_in_the_total(tmp_path):
    # "all" is a language code (ISO 639-3 Allar); the total used to be kept under it, so its counts went in twice
    from types import SimpleNamespace as Utt

    from xlsr.decode.evaluate import References

    utts = [Utt(id="1", audio="/x/1.wav", lang="all", phones="a b c d", text=None),
            Utt(id="2", audio="/x/2.wav", lang="es", phones="a b", text=None)]
    refs = References("m", utts, "phones", scored=[0, 1], missing=[], oov={}, normalize=False)
    report = refs.score({"/x/1.wav": "a b c x", "/x/2.wav": "a b"}, [])
    assert report.counts["all"]["phone"] == EditCounts(1, 0, 0, 4) and report.utterances == {"all": 1, "es": 1}
    assert report.total["phone"] == EditCounts(1, 0, 0, 6) and report.total_utterances == 2
    assert report.rate(None, "phone") == pytest.approx(1 / 6)
    rows = [line.split() for line in report.table().splitlines()]
    assert rows[2][:3] == ["all", "1", "25.00"] and rows[3][:3] == ["es", "1", "0.00"]
    assert set(rows[4][0]) == {"-"} and rows[5][:3] == ["total", "2", "16.67"]  # set apart by a rule
    data = report.to_dict()
    assert list(data["languages"]) == ["all", "es"] and data["languages"]["all"]["per"]["ref_len"] == 4
    assert data["total"]["utterances"] == 2 and data["total"]["per"]["ref_len"] == 6


def test_json_report_has_null_not_infinity_for_a_language_without_reference_units(tmp_path):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "b"], "a", "chars")
    m = manifest(tmp_path, [{"lang": "zz", "text": "|"}, {"lang": "yy", "text": "a"}])  # zz: no character to score
    out = tmp_path / "report.json"
    assert main(["evaluate", "--model", str(ckpt), "--manifest", str(m), "--json", str(out), "--no-progress"]) == 0
    text = out.read_text()
    assert "Infinity" not in text
    data = json.loads(text)
    assert data["languages"]["zz"]["cer"]["rate"] is None and data["languages"]["zz"]["cer"]["insertions"] == 1
    assert data["languages"]["yy"]["cer"]["rate"] == 0.0 and data["total"]["cer"]["rate"] == 1.0


def test_a_reference_that_normalising_empties_is_skipped_as_in_the_normalized_copy_of_its_manifest(tmp_path):
    # `xlsr data normalize-text` writes "?!" as "" (no reference); evaluate --normalize-text on the raw manifest skips
    # it the same, instead of scoring the hypothesis against nothing
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "b"], "a", "chars")
    m = manifest(tmp_path, [{"lang": "zz", "text": "¡?!"}, {"lang": "zz", "text": "A!"}])
    report = evaluate(load_ctc_model(ckpt), read_manifests([m]), normalize=True, show_progress=False)
    assert report.no_reference == ["u0"] and report.total_utterances == 1
    assert report.rate("zz", "char") == 0.0
    only = manifest(tmp_path, [{"lang": "zz", "text": "¡?!"}])
    with pytest.raises(XlsrError, match="no utterance has a 'text' reference"):
        evaluate(load_ctc_model(ckpt), read_manifests([only]), normalize=True, show_progress=False)


def test_utterance_ids_scored_twice_are_warned_about(tmp_path, caplog):
    ckpt = constant_model(tmp_path, ["<blank>", "<unk>", "|", "a", "i"], "a", "phones")
    m = manifest(tmp_path, [{"lang": "xx", "phones": "a"}, {"lang": "xx", "phones": "i"}, {"lang": "xx", "phones": "a"}])
    rows = [json.loads(line) for line in m.read_text().splitlines()]
    rows[2]["id"] = rows[0]["id"]  # one id on two lines: a manifest joined from two that both count from u0
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = evaluate(load_ctc_model(ckpt), read_manifests([m]), show_progress=False)
    assert report.total_utterances == 3 and [h["id"] for h in report.hypotheses] == ["u0", "u1", "u0"]
    assert [r.getMessage() for r in caplog.records if "more than once" in r.getMessage()] == [
        "1 utterance id(s) appear more than once among those scored (e.g. 'u0', 2 times): each line is scored on its "
        "own, and --hyps lists them under the same id"]
