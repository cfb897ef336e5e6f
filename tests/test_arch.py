import pytest

from growth.arch import arch_string, parse_arch, parse_widths
from growth.errors import ConfigError


@pytest.mark.parametrize("text,want", [("2-2-2", [2, 2, 2]), ("0-0-0", [0, 0, 0]), ("1-2-2-1", [1, 2, 2, 1]),
                                       ("3", [3]), ([1, 2], [1, 2])])
def test_parse_arch(text, want):
    assert parse_arch(text) == want
    assert parse_arch(arch_string(want)) == want


@pytest.mark.parametrize("bad", ["2-x-2", "", "2--2", "-1-2", "2-2-", "a"])
def test_bad_arch_names_key_value_and_rule(bad):
    with pytest.raises(ConfigError) as e:
        parse_arch(bad)
    msg = str(e.value)
    assert msg.startswith("model.arch=") and repr(bad) in msg and "e.g. '2-2-2'" in msg
    assert "\n" not in msg


def test_widths():
    assert parse_widths("8-12-16", 3) == [8, 12, 16]
    assert parse_widths([8, 12, 16], 3) == [8, 12, 16]
    with pytest.raises(ConfigError, match="one per stage"):
        parse_widths([8, 12], 3)
