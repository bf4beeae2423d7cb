"""The hall configuration file: validated, with errors that point at the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import load_config
from hub.errors import ConfigError

GOOD = """\
hub:
  id: hall-east
  state_dir: state
mqtt:
  port: 18830
devices:
  - id: printer-1
    model: ticket-printer-tp80
    zone: lobby
"""


def test_relative_paths_are_taken_from_the_file(tmp_path: Path) -> None:
    """A hall's configuration folder can move as a whole: paths follow the file."""
    path = tmp_path / "hall" / "hallhub.yaml"
    path.parent.mkdir()
    path.write_text(GOOD, encoding="utf-8")

    config = load_config(path)

    assert config.hub.state_dir == (tmp_path / "hall" / "state").resolve()
    assert config.client_id == "hallhub-hall-east"
    assert config.mqtt.host == "127.0.0.1"  # nothing listens or connects off-box by default


def test_error_names_file_line_and_field(tmp_path: Path) -> None:
    """A typo is reported with the file, its line and the field's path."""
    path = tmp_path / "hallhub.yaml"
    path.write_text(GOOD.replace("port: 18830", "port: lots"), encoding="utf-8")

    with pytest.raises(ConfigError) as error:
        load_config(path)

    message = str(error.value)
    assert str(path) in message
    assert "line 5" in message
    assert "mqtt.port" in message


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    """A misspelt setting is an error, not silently ignored."""
    path = tmp_path / "hallhub.yaml"
    path.write_text(GOOD + "  - id: printer-2\n    model: x\n    zome: lobby\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"line 12: devices\.1\.zome: Extra inputs"):
        load_config(path)


def test_duplicate_device_ids_are_refused(tmp_path: Path) -> None:
    """Two devices with one id would mix their histories; the file is refused."""
    path = tmp_path / "hallhub.yaml"
    path.write_text(GOOD + "  - id: printer-1\n    model: ticket-printer-tp80\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="appears twice"):
        load_config(path)


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    """Broken YAML syntax is reported with its line."""
    path = tmp_path / "hallhub.yaml"
    path.write_text("hub:\n  id: [unclosed\n", encoding="utf-8")

    with pytest.raises(ConfigError, match="line 3"):
        load_config(path)
