"""The console API for crews' alerts: resolve by hand, silences, deliveries."""

from __future__ import annotations

import httpx

from hub.service import HubService


async def test_resolve_by_hand_but_latched_call_refused(hub: HubService) -> None:
    """POST resolve closes an ordinary alert; a toilet call still active answers 409."""
    printer = await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "stuck", None)
    call = await hub.alerts.raise_condition(
        "alarm-1", "toilet_call", "urgent", "duty_desk", "call", None
    )
    auth = {"Authorization": f"Bearer {hub.token}"}
    async with httpx.AsyncClient(base_url=hub.console_url, headers=auth) as http:
        done = await http.post(f"/api/alerts/{printer['alert_id']}/resolve", json={"by": "li"})
        latched = await http.post(f"/api/alerts/{call['alert_id']}/resolve", json={"by": "li"})
        missing = await http.post("/api/alerts/999/resolve", json={})
        deliveries = await http.get(f"/api/alerts/{call['alert_id']}/deliveries")

    assert done.status_code == 200 and done.json()["alert"]["resolved_by"] == "li"
    assert latched.status_code == 409 and "reset at the device" in latched.json()["error"]
    assert missing.status_code == 404
    assert deliveries.status_code == 200


async def test_silences_are_stored_listed_ended_and_validated(hub: HubService) -> None:
    """A silence is created, listed until ended; bad input gets a clear 400; no token 401."""
    auth = {"Authorization": f"Bearer {hub.token}"}
    async with httpx.AsyncClient(base_url=hub.console_url) as http:
        anonymous = await http.post("/api/silences", json={"scope": "zone", "value": "x"})
        http.headers.update(auth)
        made = await http.post(
            "/api/silences",
            json={"scope": "zone", "value": "f2", "duration": 600, "reason": "ppm", "by": "li"},
        )
        listed = (await http.get("/api/silences")).json()["silences"]
        bad_scope = await http.post(
            "/api/silences", json={"scope": "floor", "value": "2", "duration": 60}
        )
        bad_duration = await http.post(
            "/api/silences", json={"scope": "kind", "value": "printer", "duration": "soon"}
        )
        silence_id = made.json()["silence"]["silence_id"]
        ended = await http.post(f"/api/silences/{silence_id}/end")
        after = (await http.get("/api/silences")).json()["silences"]
        again = await http.post(f"/api/silences/{silence_id}/end")

    assert anonymous.status_code == 401
    assert made.status_code == 201 and made.json()["silence"]["created_by"] == "li"
    assert [s["value"] for s in listed] == ["f2"]
    assert bad_scope.status_code == 400 and "scope must be one of" in bad_scope.json()["error"]
    assert bad_duration.status_code == 400 and "duration" in bad_duration.json()["error"]
    assert ended.status_code == 200 and after == []
    assert again.status_code == 404
