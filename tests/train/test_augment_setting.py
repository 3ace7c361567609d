"""`augment` in the pretraining and fine-tuning configs: checked when the config is built, before any run folder."""

import pytest

from xlsr.config import load_config
from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig
from xlsr.train.pretrain import PretrainConfig


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_augment_setting_is_checked_with_the_config(cls):
    assert load_config(cls, None, {}).augment == "none"
    assert load_config(cls, None, {"augment": "noise=0.5:5-30,speed=0.3"}).augment == "noise=0.5:5-30,speed=0.3"
    with pytest.raises(XlsrError, match=r"augment 'reverb=0.5:0.1-2': the RT60 in seconds range 0.1-2 is outside"):
        load_config(cls, None, {"augment": "reverb=0.5:0.1-2"})
