"""The ratings desk against a real journal: one rating per case, pad intake across a
restart, follow-up tasks on the hall calendar, overdue alerts, unrated cases."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from hub.events import Lane, Observation, device_event_id
from hub.ratings import RatingRejected, TaskStateError
from tests.ratings.kit import api_rating, hall_time, ratings_hall, rows

DAY = 86_400.0


async def test_one_rating_per_case_plus_one_follow_up(tmp_path: Path) -> None:
    """A case takes one rating and one follow-up; every other rating of it is refused
    with a reason, and each refusal is kept for inspection."""
    async with ratings_hall(tmp_path) as hall:
        clock = hall.clock
        first = await hall.desk.record(api_rating(clock, "不满意", case_no="BJ-2026-0001"))
        with pytest.raises(RatingRejected) as again:
            await hall.desk.record(api_rating(clock, "满意", case_no="BJ-2026-0001"))
        with pytest.raises(RatingRejected) as orphan:
            await hall.desk.record(
                api_rating(clock, "满意", case_no="BJ-2026-0002", follow_up=True)
            )
        follow_up = await hall.desk.record(
            api_rating(clock, "满意", case_no="BJ-2026-0001", follow_up=True)
        )
        with pytest.raises(RatingRejected) as second_follow_up:
            await hall.desk.record(
                api_rating(clock, "非常满意", case_no="BJ-2026-0001", follow_up=True)
            )
        rejects = rows(hall.journal, "SELECT reason, detail FROM rating_rejects ORDER BY reject_id")

    assert (first.fields["rating_id"], follow_up.fields["rating_id"]) == (1, 2)
    assert again.value.reason == "case_already_rated"
    assert orphan.value.reason == "no_first_rating"
    assert second_follow_up.value.reason == "follow_up_already_given"
    assert [row["reason"] for row in rejects] == [
        "case_already_rated",
        "no_first_rating",
        "follow_up_already_given",
    ]
    assert "rating 1" in rejects[0]["detail"]


async def test_a_ticket_names_a_case_only_on_its_day(tmp_path: Path) -> None:
    """Without a case number the day's ticket is the case: the same ticket is refused
    the same day and accepted the next day, when numbering has restarted."""
    async with ratings_hall(tmp_path) as hall:
        await hall.desk.record(api_rating(hall.clock, "满意", ticket="A005"))
        with pytest.raises(RatingRejected):
            await hall.desk.record(api_rating(hall.clock, "满意", ticket="A005"))
        await hall.clock.advance(DAY)
        next_day = await hall.desk.record(api_rating(hall.clock, "满意", ticket="A005"))

    assert next_day.fields["case_key"].startswith("ticket:2026-03-03:")


async def test_unknown_level_and_channel_are_refused_and_kept(tmp_path: Path) -> None:
    """A level or channel outside the standard's lists is refused with a clear reason."""
    async with ratings_hall(tmp_path) as hall:
        with pytest.raises(RatingRejected) as level:
            await hall.desk.record(api_rating(hall.clock, "还行"))
        with pytest.raises(RatingRejected) as channel:
            await hall.desk.record(api_rating(hall.clock, "满意", channel="fax"))
        kept = rows(hall.journal, "SELECT reason FROM rating_rejects")

    assert (level.value.reason, channel.value.reason) == ("unknown_level", "unknown_channel")
    assert "非常满意" in level.value.detail
    assert len(kept) == 2


def _pad_rating(seq_hint: int, **data: object) -> Observation:
    """A pad's rating as the MQTT ingest journals it."""
    return Observation(
        event_id=device_event_id("pad-w07", f"boot1-{seq_hint}"),
        lane=Lane.RATING,
        device_id="pad-w07",
        kind="rating_pad",
        type="rating",
        data=dict(data),
        received_at=hall_time(2026, 3, 2, 10, seq_hint),
        clock_synchronised=True,
    )


async def test_pad_ratings_are_taken_live_and_after_a_restart(tmp_path: Path) -> None:
    """Pad ratings journaled while the desk was down are taken at its next start, live
    ones as they commit; a second press for the same ticket is refused, and each pad
    rating is journaled once for the city with its chain link."""
    async with ratings_hall(tmp_path) as hall:
        await hall.journal.append(_pad_rating(1, level="满意", window="W07", ticket="A001"))

    async with ratings_hall(tmp_path) as hall:
        follower = asyncio.create_task(hall.desk.follow_pads())
        await hall.journal.append(_pad_rating(2, level="非常不满意", window="W07", ticket="A002"))
        await hall.journal.append(_pad_rating(3, level="满意", window="W07", ticket="A002"))
        while len(rows(hall.journal, "SELECT 1 FROM rating_rejects")) < 1:
            await asyncio.sleep(0.01)
        follower.cancel()
        ratings = rows(hall.journal, "SELECT rating_id, level, ticket, channel FROM ratings")
        recorded = rows(hall.journal, "SELECT data FROM events WHERE type = 'rating_recorded'")
        tasks = rows(hall.journal, "SELECT rating_id, level FROM rating_tasks")

    assert [(r["rating_id"], r["level"], r["ticket"]) for r in ratings] == [
        (1, "满意", "A001"),
        (2, "非常不满意", "A002"),
    ]
    assert {r["channel"] for r in ratings} == {"hall_pad"}
    sources = [json.loads(r["data"])["rating"]["source"] for r in recorded]
    assert [source.split(":")[:2] for source in sources] == [["pad", "pad-w07"]] * 2
    assert tasks == [{"rating_id": 2, "level": "非常不满意"}]


async def test_bad_rating_deadlines_count_working_days_across_national_day(
    tmp_path: Path,
) -> None:
    """A bad rating on the eve of the 2025 National Day holiday (1-8 Oct) is due for
    contact on 9 Oct, the first working day after it, and for a fix 15 working days on,
    counting the make-up Saturday 11 Oct: 28 Oct."""
    async with ratings_hall(tmp_path, wall=hall_time(2025, 9, 30, 16)) as hall:
        recorded = await hall.desk.record(api_rating(hall.clock, "不满意", case_no="BJ-1"))
        task = rows(hall.journal, "SELECT * FROM rating_tasks")[0]

    assert recorded.task_id == task["task_id"]
    assert (task["contact_due"], task["fix_due"]) == ("2025-10-09", "2025-10-28")
    assert task["state"] == "open"


async def test_configured_deadlines_are_used(tmp_path: Path) -> None:
    """A city with a 5-working-day fix rule gets it: Monday's bad rating is due next Monday."""
    settings = {"fix_within_working_days": 5, "contact_within_working_days": 2}
    async with ratings_hall(tmp_path, settings, wall=hall_time(2026, 3, 2)) as hall:
        await hall.desk.record(api_rating(hall.clock, "非常不满意", case_no="BJ-2"))
        task = rows(hall.journal, "SELECT contact_due, fix_due FROM rating_tasks")[0]

    assert task == {"contact_due": "2026-03-04", "fix_due": "2026-03-09"}


async def test_overdue_task_raises_a_supervisor_condition_once_and_steps_are_audited(
    tmp_path: Path,
) -> None:
    """Nothing is overdue during the holiday; the day after the contact deadline a
    supervisor alert opens (once, however often the sweep runs); recording the contact
    resolves it, and contact and fix are each in the audit trail with who did them."""
    async with ratings_hall(tmp_path, wall=hall_time(2025, 9, 30, 16)) as hall:
        recorded = await hall.desk.record(api_rating(hall.clock, "不满意", case_no="BJ-3"))
        task_id = recorded.task_id
        assert task_id is not None
        await hall.clock.advance(8 * DAY)  # 8 Oct, still the holiday
        during_holiday = await hall.desk.tasks.alert_overdue()
        await hall.clock.advance(2 * DAY)  # 10 Oct: 9 Oct has passed uncontacted
        await hall.desk.sweep()
        await hall.desk.sweep()
        opened = rows(hall.journal, "SELECT team, state, condition, severity FROM alerts")
        with pytest.raises(TaskStateError):
            await hall.desk.tasks.record_fix(task_id, "王主任", "fixed before contact")
        await hall.desk.tasks.record_contact(task_id, "李四", "called back, apologised")
        after_contact = rows(hall.journal, "SELECT state FROM alerts")
        fixed = await hall.desk.tasks.record_fix(task_id, "王主任", "queue signage corrected")
        trail = hall.audit.entries()

    assert during_holiday == 0
    assert opened == [
        {
            "team": "supervisor",
            "state": "open",
            "condition": f"rating_task_overdue:{task_id}:contact",
            "severity": "high",
        }
    ]
    assert after_contact == [{"state": "resolved"}]
    assert (fixed["state"], fixed["contacted_by"], fixed["fixed_by"]) == ("fixed", "李四", "王主任")
    assert [(e.actor, e.action) for e in reversed(trail)] == [
        ("李四", "rating_task_contacted"),
        ("王主任", "rating_task_fixed"),
    ]
    assert trail[0].detail == {"note": "queue signage corrected"}


async def test_unrated_cases_are_listed_after_n_days(tmp_path: Path) -> None:
    """A finished case stays off the follow-up list until it has been unrated for
    follow_up_after_days; a rated case never appears."""
    from hub.ratings import views

    async with ratings_hall(tmp_path, {"follow_up_after_days": 60}) as hall:
        await hall.desk.record_case("W07", "S1024", "BJ-10", None)
        await hall.desk.record_case("W07", "S1024", "BJ-11", None)
        await hall.desk.record(api_rating(hall.clock, "满意", case_no="BJ-11"))
        await hall.clock.advance(59 * DAY)
        with hall.journal.reading() as conn:
            early = views.unrated(conn, hall.desk.settings, hall.clock.wall())
        await hall.clock.advance(1 * DAY + 1)
        with hall.journal.reading() as conn:
            due = views.unrated(conn, hall.desk.settings, hall.clock.wall())

    assert early["cases"] == []
    assert [(c["case_no"], c["staff_id"], c["days_unrated"]) for c in due["cases"]] == [
        ("BJ-10", "S1024", 60)
    ]


async def test_unrated_policy_counts_a_case_as_basic_after_seven_days(tmp_path: Path) -> None:
    """With the policy on, a case unrated for 7 days is counted as 基本满意 once, in
    the chain like any rating; with it off, nothing is counted."""
    settings = {"unrated_counts_as_basic_after_days": 7}
    async with ratings_hall(tmp_path / "on", settings) as hall:
        await hall.desk.record_case("W03", "S77", "BJ-20", None)
        await hall.clock.advance(6 * DAY)
        too_early = await hall.desk.apply_unrated_policy()
        await hall.clock.advance(1 * DAY + 1)
        counted = await hall.desk.apply_unrated_policy()
        again = await hall.desk.apply_unrated_policy()
    async with ratings_hall(tmp_path / "off") as hall:
        await hall.desk.record_case("W03", "S77", "BJ-20", None)
        await hall.clock.advance(8 * DAY)
        off = await hall.desk.apply_unrated_policy()

    assert too_early == [] and again == [] and off == []
    assert [(r.fields["level"], r.fields["channel"], r.fields["staff_id"]) for r in counted] == [
        ("基本满意", "unrated_policy", "S77")
    ]


async def test_staff_id_comes_from_the_case_record(tmp_path: Path) -> None:
    """A pad knows only window and ticket; the case the window finished names the staff."""
    async with ratings_hall(tmp_path) as hall:
        await hall.desk.record_case("W07", "S2048", None, "B012")
        recorded = await hall.desk.record(
            api_rating(hall.clock, "满意", ticket="B012", staff_id=None, channel="hall_pad")
        )

    assert recorded.fields["staff_id"] == "S2048"


async def test_a_rating_chained_before_a_crash_is_journaled_once_at_restart(
    tmp_path: Path,
) -> None:
    """A crash after a rating was chained but before its event reached the journal
    loses nothing: the next start journals it; one whose event did get there (only the
    note of it was lost) is not journaled twice."""
    async with ratings_hall(tmp_path) as hall:
        await hall.desk.record(api_rating(hall.clock, "满意", case_no="BJ-40"))
        await hall.desk.record(api_rating(hall.clock, "不满意", case_no="BJ-41"))

    def crash_before_journaling(conn: sqlite3.Connection) -> None:
        conn.execute(
            "DELETE FROM events WHERE type = 'rating_recorded'"
            " AND json_extract(data, '$.chain.index') = 2"
        )
        conn.execute("UPDATE ratings_meta SET value = '0' WHERE key = 'journaled_through'")

    with sqlite3.connect(tmp_path / "journal.sqlite3") as conn:
        crash_before_journaling(conn)
    conn.close()

    async with ratings_hall(tmp_path) as hall:
        recorded = rows(
            hall.journal,
            "SELECT json_extract(data, '$.chain.index') AS chain_index FROM events"
            " WHERE type = 'rating_recorded' ORDER BY seq",
        )

    assert [row["chain_index"] for row in recorded] == [1, 2]


async def test_ratings_cli_lists_tasks_and_unrated_cases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hallhub ratings tasks`, `unrated` and `today` read the journal file of a stopped
    hub and print what the API shows, as tables or JSON."""
    from hub.cli import main

    state_dir = tmp_path / "hub"
    async with ratings_hall(state_dir, wall=hall_time(2025, 9, 30, 16)) as hall:
        await hall.desk.record(api_rating(hall.clock, "非常不满意", case_no="BJ-50"))
        await hall.desk.record_case("W02", "S5", "BJ-51", None)
    config = tmp_path / "hallhub.yaml"
    config.write_text(json.dumps({"hub": {"id": "hall-test", "state_dir": str(state_dir)}}))

    def run(*words: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["ratings", *words, "--config", str(config)])
        return code, capsys.readouterr().out

    tasks_code, tasks_json = run("tasks", "--json")
    table_code, table = run("tasks")
    unrated_code, unrated_json = run("unrated", "--json")
    today_code, today_json = run("today", "--json")

    assert (tasks_code, table_code, unrated_code, today_code) == (0, 0, 0, 0)
    task = json.loads(tasks_json)["tasks"][0]
    assert (task["level"], task["contact_due"], task["fix_due"]) == (
        "非常不满意",
        "2025-10-09",
        "2025-10-28",
    )
    assert task["overdue"] is True and task["overdue_steps"] == ["contact", "fix"]
    assert "OVERDUE contact,fix" in table and "非常不满意" in table
    assert [case["case_no"] for case in json.loads(unrated_json)["cases"]] == ["BJ-51"]
    assert set(json.loads(today_json)["levels"]) == {
        "非常满意",
        "满意",
        "基本满意",
        "不满意",
        "非常不满意",
    }
