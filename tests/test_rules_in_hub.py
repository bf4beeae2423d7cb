"""Rules inside the running hub: restart mid-timer, journaled firings, reload, layers."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from hub.broker import ManagedBroker
from hub.clock import ManualClock
from hub.service import HubService
from rules.layers import CITY_RULES_DIR, hall_layers, load_layers
from tests.hubkit import DeviceClient, eventually, hub_config
from tests.rulekit import advance, wall_at

DEVICES = [{"id": "occ-1", "model": "occupancy-sensor-os1", "zone": "1F waiting zone"}]

HALL_RULES = """\
overrides:
  crowding:
    if:
      threshold: {above: 10, clear_below: 5}
"""


def crowding_alerts(hub: HubService) -> list[str]:
    with hub.journal.reading() as conn:
        rows = conn.execute("SELECT state FROM alerts WHERE condition = 'crowding'").fetchall()
    return [row[0] for row in rows]


async def start(tmp_path: Path, broker: ManagedBroker, root: str, clock: ManualClock) -> HubService:
    rules = tmp_path / "hall-rules.yaml"
    if not rules.exists():
        rules.write_text(HALL_RULES, encoding="utf-8")
    config = hub_config(tmp_path / "hub", broker.port, root, DEVICES, rule_files=[str(rules)])
    hub = HubService(config, clock=clock)
    await hub.start()
    assert hub.ingest.wait_connected(10)
    time.sleep(0.2)
    return hub


async def test_restart_mid_timer_loses_nothing(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """Crowded for 5 of 10 minutes, hub restarts: the alert comes 5 minutes later, not 10."""
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=wall_at("2026-03-02 10:00"))
    device = DeviceClient(broker.port, "occ-1")
    hub = await start(tmp_path, broker, root, clock)
    try:
        device.publish(f"{root}/occ-1/count", {"occupancy": 20})
        await eventually(lambda: hub.rules.engine.states.get(("crowding", "1F waiting zone")))
        await advance(clock, 300)
        await hub.stop()

        hub = await start(tmp_path, broker, root, clock)
        await advance(clock, 290)
        assert crowding_alerts(hub) == []
        await advance(clock, 15)
        assert await eventually(lambda: crowding_alerts(hub) == ["open"])
    finally:
        device.close()
        await hub.stop()


async def test_every_firing_is_journaled_with_rule_and_event_ids(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """The firing row names the rule and the id of the event that started the state."""
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=wall_at("2026-03-02 10:00"))
    device = DeviceClient(broker.port, "occ-1")
    hub = await start(tmp_path, broker, root, clock)
    try:
        device.publish(f"{root}/occ-1/count", {"occupancy": 20})
        await eventually(lambda: hub.rules.engine.states.get(("crowding", "1F waiting zone")))
        await advance(clock, 601)
        await eventually(lambda: crowding_alerts(hub))
        with hub.journal.reading() as conn:
            event_id = conn.execute("SELECT event_id FROM events WHERE type = 'count'").fetchone()[
                0
            ]
            firing = conn.execute(
                "SELECT trigger_ids, actions FROM rule_firings WHERE rule_id = 'crowding'"
            ).fetchone()
    finally:
        device.close()
        await hub.stop()
    assert json.loads(firing[0]) == [event_id]
    kinds = [action["action"] for action in json.loads(firing[1])]
    assert kinds == ["RaiseCondition", "SetZoneState"]


async def test_hot_reload_takes_valid_files_and_refuses_invalid_ones(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A broken edit is refused with file and line and the old rules stay; a good one applies."""
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=wall_at("2026-03-02 10:00"))
    hub = await start(tmp_path, broker, root, clock)
    rules_file = tmp_path / "hall-rules.yaml"
    try:
        rules_file.write_text(HALL_RULES + "      held_for: -5\n", encoding="utf-8")
        await advance(clock, 6)
        error = hub.rules.watcher.last_error
        assert error is not None and "hall-rules.yaml" in str(error) and "line 5" in str(error)
        crowding = next(r for r in hub.rules.engine.rules if r.id == "crowding")
        assert crowding.if_.held_for == 600

        rules_file.write_text(HALL_RULES + "      held_for: 60\n", encoding="utf-8")
        await advance(clock, 6)
        crowding = next(r for r in hub.rules.engine.rules if r.id == "crowding")
        assert crowding.if_.held_for == 60 and hub.rules.watcher.last_error is None
    finally:
        await hub.stop()


def test_layers_city_then_hall_and_every_setting_names_its_source(tmp_path: Path) -> None:
    """The city baseline changes the pack, the hall changes the city; sources say who did."""
    city = tmp_path / "state" / CITY_RULES_DIR
    city.mkdir(parents=True)
    (city / "baseline.yaml").write_text(
        "overrides:\n  crowding:\n    if:\n      held_for: 900\n"
        "      threshold: {above: 60, clear_below: 50}\n",
        encoding="utf-8",
    )
    hall = tmp_path / "hall.yaml"
    hall.write_text(
        "overrides:\n  crowding:\n    if:\n      threshold: {above: 55}\n"
        "  bad-rating:\n    enabled: false\n",
        encoding="utf-8",
    )
    loaded = load_layers(hall_layers(tmp_path / "state", [hall]))
    crowding = next(rule for rule in loaded.rules if rule.id == "crowding")
    bad = next(rule for rule in loaded.rules if rule.id == "bad-rating")
    assert crowding.if_.held_for == 900
    assert crowding.if_.threshold is not None
    assert (crowding.if_.threshold.above, crowding.if_.threshold.clear_below) == (55, 50)
    assert not bad.enabled
    sources = loaded.sources["crowding"]
    assert sources["if.held_for"].startswith(f"city:{city / 'baseline.yaml'}:4")
    assert sources["if.threshold.above"] == f"hall:{hall}:4"
    assert sources["when.kind"].startswith("pack:")


def test_override_of_an_unknown_rule_is_refused(tmp_path: Path) -> None:
    """A hall override naming no rule is an error with the file and line, not ignored."""
    hall = tmp_path / "hall.yaml"
    hall.write_text("overrides:\n  crowdin:\n    enabled: false\n", encoding="utf-8")
    try:
        load_layers(hall_layers(tmp_path / "state", [hall]))
    except Exception as exc:
        assert "hall.yaml" in str(exc) and "line 2" in str(exc) and "crowdin" in str(exc)
    else:
        raise AssertionError("an override of an unknown rule was accepted")


async def test_calendar_and_clock_warnings_become_alerts_for_hall_it(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """In December with no table for next year, and with an unsynchronised clock: alerts."""
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=wall_at("2026-12-04 10:00"))
    hub = await start(tmp_path, broker, root, clock)
    try:
        missing = await eventually(lambda: _hall_it_alerts(hub))
        assert missing == [("next_year_table_missing", "open")]
        clock.synchronised = False
        await advance(clock, 61)
        assert await eventually(
            lambda: (
                sorted(_hall_it_alerts(hub))
                == [("clock_not_synchronised", "open"), ("next_year_table_missing", "resolved")]
            )
        )
    finally:
        await hub.stop()


def _hall_it_alerts(hub: HubService) -> list[tuple[str, str]]:
    with hub.journal.reading() as conn:
        rows = conn.execute("SELECT condition, state FROM alerts WHERE team = 'hall_it'")
        return [(row[0], row[1]) for row in rows]


async def test_console_shows_rules_with_the_source_of_each_setting(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """GET /api/rules names the hall file and line that changed the crowding threshold."""
    import httpx

    root = unique_topic_root.replace("/", "-")
    hub = await start(tmp_path, broker, root, ManualClock(wall=wall_at("2026-03-02 10:00")))
    try:
        async with httpx.AsyncClient(base_url=hub.console_url) as http:
            refused = await http.get("/api/rules")
            auth = {"Authorization": f"Bearer {hub.token}"}
            body = (await http.get("/api/rules", headers=auth)).json()
    finally:
        await hub.stop()
    assert refused.status_code == 401
    crowding = next(rule for rule in body["rules"] if rule["id"] == "crowding")
    assert crowding["sources"]["if.threshold.above"] == f"hall:{tmp_path / 'hall-rules.yaml'}:4"
    assert crowding["sources"]["when.kind"].startswith("pack:")


async def test_publish_and_derived_event_actions(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A rule publishes to its topic and emits a journaled derived event no rule reacts to."""
    from tests.hubkit import Listener

    root = unique_topic_root.replace("/", "-")
    (tmp_path / "hall-rules.yaml").write_text(
        "rules:\n"
        "  - id: signage\n"
        "    when: {kind: occupancy_sensor, type: count}\n"
        "    then:\n"
        f"      - publish: {{topic: '{root}-signs/{{zone}}', payload: {{people: 1}}}}\n"
        "      - emit: {type: zone_count_seen, data: {zone: '{zone}'}}\n"
        "  - id: echo\n"
        "    when: {type: zone_count_seen}\n"
        "    then: [{emit: {type: loop}}]\n",
        encoding="utf-8",
    )
    signs = Listener(broker.port, f"{root}-signs/#")
    device = DeviceClient(broker.port, "occ-1")
    hub = await start(tmp_path, broker, root, ManualClock(wall=wall_at("2026-03-02 10:00")))
    try:
        device.publish(f"{root}/occ-1/count", {"occupancy": 3})
        message = await eventually(lambda: signs.messages)
        derived = await eventually(lambda: _events_of_kind(hub, "rule"))
        time.sleep(0.3)
        assert _events_of_kind(hub, "rule") == derived
    finally:
        signs.close()
        device.close()
        await hub.stop()
    assert message[0][0] == f"{root}-signs/1F waiting zone" and message[0][1] == {"people": 1}
    assert derived == [
        (
            "zone_count_seen",
            "telemetry",
            {"zone": "1F waiting zone", "rule_id": "signage", "about": "occ-1"},
        )
    ]


def _events_of_kind(hub: HubService, kind: str) -> list[tuple[str, str, dict[str, str]]]:
    with hub.journal.reading() as conn:
        rows = conn.execute("SELECT type, lane, data FROM events WHERE kind = ?", (kind,))
        return [(row[0], row[1], json.loads(row[2])) for row in rows]


async def test_wall_clock_jumps_in_the_hub_neither_fire_nor_strand_a_timer(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """An NTP step of +1 h mid-hold fires nothing; the 10 minutes still end on time."""
    root = unique_topic_root.replace("/", "-")
    clock = ManualClock(wall=wall_at("2026-03-02 10:00"))
    device = DeviceClient(broker.port, "occ-1")
    hub = await start(tmp_path, broker, root, clock)
    try:
        device.publish(f"{root}/occ-1/count", {"occupancy": 20})
        await eventually(lambda: hub.rules.engine.states.get(("crowding", "1F waiting zone")))
        await advance(clock, 200)
        clock.jump_wall(3600)
        await advance(clock, 390)
        assert crowding_alerts(hub) == []
        clock.jump_wall(-7200)
        await advance(clock, 15)
        assert await eventually(lambda: crowding_alerts(hub) == ["open"])
    finally:
        device.close()
        await hub.stop()


def test_a_city_baseline_arriving_later_is_picked_up_by_reload(tmp_path: Path) -> None:
    """The sync drops a baseline file into the empty city folder: the next look reloads it."""
    from rules.layers import RuleFilesWatcher

    state = tmp_path / "state"
    watcher = RuleFilesWatcher(hall_layers(state, []))
    assert watcher.reload_if_changed() is None
    city = state / CITY_RULES_DIR
    city.mkdir(parents=True)
    (city / "baseline.yaml").write_text(
        "overrides:\n  crowding:\n    if: {held_for: 1200}\n", encoding="utf-8"
    )
    loaded = watcher.reload_if_changed()
    assert loaded is not None
    crowding = next(rule for rule in loaded.rules if rule.id == "crowding")
    assert crowding.if_.held_for == 1200
    assert loaded.sources["crowding"]["if.held_for"].startswith("city:")


async def test_a_firing_cut_off_before_its_actions_is_carried_out_at_start(
    broker: ManagedBroker, tmp_path: Path, unique_topic_root: str
) -> None:
    """A firing on disk but not marked applied (a crash in between) acts at the next start.

    A firing that was applied acts only once, however often the hub restarts.
    """
    from tests.hubkit import Listener

    root = unique_topic_root.replace("/", "-")
    (tmp_path / "hall-rules.yaml").write_text(
        "rules:\n"
        "  - id: signage\n"
        "    when: {kind: occupancy_sensor, type: count}\n"
        f"    then: [{{publish: {{topic: '{root}-signs/{{zone}}', payload: {{people: 1}}}}}}]\n",
        encoding="utf-8",
    )
    signs = Listener(broker.port, f"{root}-signs/#")
    device = DeviceClient(broker.port, "occ-1")
    clock = ManualClock(wall=wall_at("2026-03-02 10:00"))
    hub = await start(tmp_path, broker, root, clock)
    try:
        device.publish(f"{root}/occ-1/count", {"occupancy": 3})
        await eventually(lambda: signs.messages)
        await eventually(lambda: _unapplied(hub) == 0)
        await hub.stop()
        hub = await start(tmp_path, broker, root, clock)
        time.sleep(0.3)
        assert len(signs.messages) == 1  # applied once, not again at a restart

        await hub.stop()
        conn = sqlite3.connect(hub.journal.path)
        conn.execute("UPDATE rule_firings SET applied_at = NULL")  # what the crash left
        conn.commit()
        conn.close()
        hub = await start(tmp_path, broker, root, clock)
        await eventually(lambda: len(signs.messages) == 2)
        assert _unapplied(hub) == 0
    finally:
        signs.close()
        device.close()
        await hub.stop()


def _unapplied(hub: HubService) -> int:
    with hub.journal.reading() as conn:
        return int(
            conn.execute("SELECT COUNT(*) FROM rule_firings WHERE applied_at IS NULL").fetchone()[0]
        )
