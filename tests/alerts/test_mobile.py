"""The phone page: token or cookie to see it, CSRF token or header to change anything."""

from __future__ import annotations

import re

import httpx

from hub.alerts.mobile import csrf_token
from hub.service import HubService
from tests.alerts.kit import rows


async def test_phone_signs_in_once_then_acknowledges_with_a_tap(hub: HubService) -> None:
    """Opening /m/alerts?token= sets the cookie; the page's own form acknowledges."""
    alert = await hub.alerts.raise_condition(
        "alarm-1", "toilet_call", "urgent", "duty_desk", "Toilet call <f1>", None
    )
    async with httpx.AsyncClient(base_url=hub.console_url) as phone:
        anonymous = await phone.get("/m/alerts")
        signed_in = await phone.get(f"/m/alerts?token={hub.token}")
        phone.cookies.set("hallhub_token", signed_in.cookies["hallhub_token"])
        page = await phone.get("/m/alerts")
        action = re.search(
            rf"action='(/m/alerts/{alert['alert_id']}/ack\?csrf=[0-9a-f]+)'", page.text
        )
        assert action is not None
        tapped = await phone.post(action.group(1), data={"by": "zhang"})

    stored = rows(hub.journal, "SELECT * FROM alerts WHERE alert_id = ?", alert["alert_id"])[0]
    assert anonymous.status_code == 401
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/m/alerts"
    assert "Toilet call &lt;f1&gt;" in page.text and "<f1>" not in page.text
    # a latched call has no resolve button
    assert f"/m/alerts/{alert['alert_id']}/resolve?" not in page.text
    assert "http" not in page.text.split("<body>")[1]  # nothing loaded from elsewhere
    assert tapped.status_code == 303
    assert stored["state"] == "acknowledged" and stored["acknowledged_by"] == "mobile:zhang"


async def test_cookie_post_without_the_csrf_token_is_refused(hub: HubService) -> None:
    """Another site cannot make a signed-in phone acknowledge: no CSRF token, no change."""
    alert = await hub.alerts.raise_condition("pad-1", "stuck", "normal", "it", "stuck", None)
    alert_id = alert["alert_id"]
    async with httpx.AsyncClient(base_url=hub.console_url) as phone:
        phone.cookies.set("hallhub_token", hub.token)
        forged = await phone.post(f"/m/alerts/{alert_id}/ack", data={"by": "x"})
        wrong = await phone.post(f"/m/alerts/{alert_id}/ack?csrf={'0' * 64}", data={"by": "x"})
        api = await phone.post(f"/api/alerts/{alert_id}/acknowledge?csrf={csrf_token(hub.token)}")
        unknown = await phone.post(
            f"/m/alerts/{alert_id}/delete", headers={"Authorization": f"Bearer {hub.token}"}
        )
        resolved = await phone.post(
            f"/m/alerts/{alert_id}/resolve",
            data={"by": "ops"},
            headers={"Authorization": f"Bearer {hub.token}"},
        )

    stored = rows(hub.journal, "SELECT * FROM alerts WHERE alert_id = ?", alert_id)[0]
    assert forged.status_code == 401 and wrong.status_code == 401
    assert api.status_code == 401  # the CSRF token opens only the phone page's forms
    assert unknown.status_code == 404
    assert resolved.status_code == 303 and stored["resolved_by"] == "mobile:ops"
