"""conf/logger: the experiment-tracker config group (issue 20 item 1). Only the config side so far."""
import pytest

from growth.engine.config_check import check_types
from growth.errors import ConfigError
from run import preflight
from tests.conftest import tiny_cfg


def test_no_logger_by_default_and_several_at_once_each_under_its_own_key():
    assert "logger" not in tiny_cfg()
    both = tiny_cfg(logger="[tensorboard,mlflow]")["logger"]
    assert set(both) == {"tensorboard", "mlflow"} and both["tensorboard"]["every_n_steps"] == 50
    assert both["mlflow"]["tracking_uri"] == "sqlite:///outputs/mlflow.db"


def test_an_unknown_logger_is_one_line_also_inside_a_list():
    assert preflight(["logger=tensorboard"]) is None and preflight(["logger=[tensorboard,wandb]"]) is None
    assert preflight(["logger=nosuch"]).startswith("logger='nosuch': unknown option; allowed: mlflow, tensorboard, wandb")
    assert preflight(["logger=[tensorboard,nosuch]"]).startswith("logger='nosuch': unknown option")


def test_logger_keys_are_type_checked_against_their_defaults():
    cfg = tiny_cfg(logger="[tensorboard,wandb]")
    check_types(cfg)
    cfg["logger"]["tensorboard"]["every_n_steps"] = "abc"
    with pytest.raises(ConfigError, match=r"^logger.tensorboard.every_n_steps='abc': allowed: an integer"):
        check_types(cfg)
