"""Commands and expected settings in device models: every commanded kind is covered,
and a model that could never be acknowledged or checked for drift is refused at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.profiles import COMMAND_ACK, load_model_file, load_models, shipped_models_dir
from hub.errors import ConfigError

SHIPPED = load_models(shipped_models_dir())


def test_every_printer_alarm_and_pad_model_has_its_kinds_commands() -> None:
    """Printers print and change headers, alarms switch their lamp, pads prompt a
    rating; each such model also declares the command_ack message its devices send."""
    expected = {
        "ticket_printer": {"print_ticket", "set_header"},
        "toilet_alarm": {"lamp"},
        "rating_pad": {"prompt_rating"},
    }
    for model in SHIPPED.values():
        if model.kind not in expected or model.mqtt is None:
            continue
        assert set(model.mqtt.commands) == expected[model.kind], model.model
        assert COMMAND_ACK in model.mqtt.messages, model.model


def _variant(tmp_path: Path, name: str, change: tuple[str, str]) -> Path:
    text = (shipped_models_dir() / f"{name}.yaml").read_text(encoding="utf-8")
    assert change[0] in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(change[0], change[1]), encoding="utf-8")
    return path


def test_commands_without_an_ack_message_are_refused_naming_file_and_model(
    tmp_path: Path,
) -> None:
    """A model with commands but no command_ack message could never be acknowledged:
    refused, naming the file and the model."""
    path = _variant(tmp_path, "toilet-alarm-ta1", ("    command_ack:", "    command_answer:"))

    with pytest.raises(ConfigError) as caught:
        load_model_file(path)

    assert str(path) in str(caught.value) and "model toilet-alarm-ta1" in str(caught.value)
    assert "command_ack" in str(caught.value)


def test_an_expected_setting_the_status_does_not_report_is_refused(tmp_path: Path) -> None:
    """A setting the device never reports could never show drift: refused at load."""
    path = _variant(tmp_path, "ticket-printer-tp80", ("  heartbeat_interval: 30", "  volume: 3"))

    with pytest.raises(ConfigError) as caught:
        load_model_file(path)

    assert "model ticket-printer-tp80" in str(caught.value) and "volume" in str(caught.value)
