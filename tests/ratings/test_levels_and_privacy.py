"""Level codes per target system, the ``ratings:`` configuration, and masked names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError
from hub.ratings import LEVELS, LevelCodes, mask_name


def test_national_and_provincial_targets_number_levels_in_opposite_directions() -> None:
    """GB/T 39046 gives 非常满意 code 1; a 5-is-best province gives it 5; names stay names."""
    codes = LevelCodes()
    assert [codes.code("gbt39046", level) for level in LEVELS] == [1, 2, 3, 4, 5]
    assert [codes.code("provincial5", level) for level in LEVELS] == [5, 4, 3, 2, 1]
    assert codes.codes_for("不满意") == {"gbt39046": 4, "provincial5": 2}
    with pytest.raises(KeyError, match="unknown rating target"):
        codes.code("nowhere", "满意")


def test_a_hall_adds_its_own_target_in_the_configuration(tmp_path: Path) -> None:
    """A target map from the hall configuration is used; one missing a level is refused
    at load with the file, the field and the missing level named."""
    good = tmp_path / "good.yaml"
    good.write_text(
        "hub: {id: hall-1}\nratings:\n  targets:\n    city-x: {非常满意: 10, 满意: 8,"
        " 基本满意: 6, 不满意: 4, 非常不满意: 2}\n",
        encoding="utf-8",
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "hub: {id: hall-1}\nratings:\n  targets:\n    city-y: {非常满意: 1, 满意: 2}\n",
        encoding="utf-8",
    )

    config = load_config(good)
    assert LevelCodes(config.ratings.targets).code("city-x", "不满意") == 4
    with pytest.raises(ConfigError) as refused:
        load_config(bad)
    assert "bad.yaml" in str(refused.value) and "基本满意" in str(refused.value)
    assert "ratings.targets" in str(refused.value)


@pytest.mark.parametrize(
    ("name", "shown"),
    [("张三", "张*"), ("欧阳娜娜", "欧***"), ("李", "李*"), (" 王小明 ", "王**"), ("", "")],
)
def test_names_on_call_screens_keep_only_the_first_character(name: str, shown: str) -> None:
    """A call screen shows 张* for 张三: one character of the name, never the whole."""
    assert mask_name(name) == shown
