"""A fine-tuning run keeps its CNN frozen by default, which sets the model's feature_grad_mult to 0: a
--model.feature_grad_mult above 0 given with it would be dropped unsaid, so it is refused in one line naming both
settings and the way out. 0 (fairseq's fine-tuning value) agrees with a frozen CNN and is taken."""

import pytest

from xlsr.cli.main import main
from xlsr.config import load_config
from xlsr.errors import XlsrError
from xlsr.train.finetune import FinetuneConfig
from xlsr.train.recipes import recipe_path


def test_the_command_refuses_a_cnn_gradient_with_a_frozen_cnn(tmp_path, capsys):
    rc = main(["finetune", "--train", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "run"),
               "--model.feature_grad_mult", "0.1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err == ("xlsr: error: model.feature_grad_mult 0.1: the CNN is frozen (freeze_feature_encoder true), so its "
                   "gradient is 0 whatever this says; give --freeze-feature-encoder false to train the CNN with it, "
                   "or leave --model.feature_grad_mult out\n")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("mult, refused", [(0.5, True), (0.0, False)])
def test_with_a_recipe_only_fairseqs_value_is_taken(mult, refused):
    overrides = {"recipe": "vox-10h", "model": {"feature_grad_mult": mult}}
    if refused:
        with pytest.raises(XlsrError, match=r"^model.feature_grad_mult 0.5: the CNN is frozen"):
            load_config(FinetuneConfig, [recipe_path("vox-10h", "finetune")], overrides)
    else:
        assert load_config(FinetuneConfig, [recipe_path("vox-10h", "finetune")], overrides).model[
            "feature_grad_mult"] == 0.0


def test_adapter_training_names_its_own_reason():
    with pytest.raises(XlsrError, match=r"^model.feature_grad_mult 1: with train_only adapters the CNN is frozen, so "
                                        r"its gradient is 0 whatever this says; leave --model.feature_grad_mult out$"):
        FinetuneConfig(train=["t.jsonl"], train_only="adapters", freeze_feature_encoder=False,
                       model={"feature_grad_mult": 1.0})


@pytest.mark.parametrize("freeze, mult", [(True, 0.0), (True, None), (False, 0.1), (False, None)])
def test_settings_that_agree_are_taken(freeze, mult):
    model = {} if mult is None else {"feature_grad_mult": mult}
    cfg = FinetuneConfig(train=["t.jsonl"], freeze_feature_encoder=freeze, model=model)
    assert cfg.model.get("feature_grad_mult") == mult
