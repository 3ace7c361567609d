"""fairseq 0.12.2 itself reads what we export, and we read what it writes, to fp32 rounding.

The reference lives in tools/fairseq-ref (scripts/fairseq_reference.sh; `make test` runs it first and
sets XLSR_FAIRSEQ_REF); it runs in a subprocess (fairseq_reference_check.py), away from this process's
omegaconf. Without the reference (a bare `pytest` before `make test`) the test is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHECK = Path(__file__).with_name("fairseq_reference_check.py")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    required = os.environ.get("XLSR_FAIRSEQ_REF")
    reference = Path(required or ROOT / "tools" / "fairseq-ref")
    if not (reference / ".complete").is_file():
        if required:
            pytest.fail(f"XLSR_FAIRSEQ_REF={required}: no fairseq reference there (run scripts/fairseq_reference.sh)")
        pytest.skip("no fairseq reference in tools/fairseq-ref (scripts/fairseq_reference.sh; make test runs it)")
    work = tmp_path_factory.mktemp("fairseq_reference")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(CHECK), str(reference), str(work)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("direction", ["import", "export"])
@pytest.mark.parametrize("family", ["base", "xlsr"])
def test_encoder_and_ctc_outputs_match_fairseq(results, direction, family):
    for output in ("encoder", "ctc_log_probs"):
        check = results[f"{direction}/{family}/{output}"]
        assert check["max_abs_diff"] <= 1e-5 * max(1.0, check["scale"]), (output, check)
    assert results[f"{direction}/{family}/codewords"]["agree"] == 1.0
    assert results[f"{direction}/{family}/normalize"]["equal"]


def test_fairseq_dictionary_order_of_an_export(results):
    for family in ("base", "xlsr"):
        # fairseq's four specials first (<s> is its CTC blank), then our symbols in our order
        assert results[f"export/{family}/ctc_dictionary"]["symbols"] == ["<s>", "<pad>", "</s>", "<unk>",
                                                                         "|", "a", "b", "c", "d"]
        # the two rows we add for <pad> and </s> are never predicted
        assert results[f"export/{family}/ctc_other_rows"]["max_log_prob"] < -1000


def test_a_fairseq_fine_tuned_model_keeps_its_dictionary(results):
    for family in ("base", "xlsr"):
        assert results[f"import/{family}/ctc_vocab"]["tokens"] == ["<blank>", "<unk>", "<pad>", "</s>",
                                                                   "|", "a", "b", "c", "d"]
