"""A fine-tuning run recorded (before xlsr refused it) with model.feature_grad_mult 0.1 beside a frozen CNN, from a
Hugging Face --init, resumes with the option left out: the checkpoint holds 0 whatever the record says."""

import pytest

from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig, finetune

from .test_resume_changed_settings import finetune_cfg, tones, write_init  # noqa: F401 (fixture)


def test_a_run_recorded_with_a_cnn_gradient_resumes_one_way(tones, tmp_path, monkeypatch):  # noqa: F811
    init = write_init("hf", tmp_path / "init", ctc=True)
    run = tmp_path / "run"
    with monkeypatch.context() as m:  # the earlier version: no refusal
        m.setattr(FinetuneConfig, "_check_cnn_gradient", lambda self: None)
        finetune(finetune_cfg(tones, init, run, 1, model={"feature_grad_mult": 0.1}))
    errors = []
    for model in ({"feature_grad_mult": 0.1}, {}):
        try:
            finetune(finetune_cfg(tones, init, run, 2, model=model))
            return
        except XlsrError as exc:
            errors.append(str(exc))
    pytest.fail(" | ".join(errors))
