"""The console's HTML: one shell per page, labelled in the user's language.

The server writes the frame, headings, table heads and forms, so every label is
there before any script runs (screen readers and axe see a complete page);
``console.js`` fills the tables from the JSON API and keeps them live.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib import resources
from typing import Any

ALERT_COLUMNS = ["col.id", "col.severity", "col.team", "col.device", "col.message", "col.state"]
PAGES = ("overview", "devices", "alerts", "queue", "ratings", "sync", "rules")
ALERT_COLUMNS = ["col.id", "col.severity", "col.team", "col.device", "col.message", "col.state"]
HTML_LANGUAGE = {"zh": "zh-CN", "en": "en"}


@cache
def catalogue(language: str) -> dict[str, str]:
    """Every label of the console in one language ("zh" or "en")."""
    path = resources.files("hub.console_web") / "messages" / f"{language}.json"
    loaded: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def render_login(language: str, problem: str | None = None) -> str:
    """The sign-in form; open to everyone, so it carries its little style inline."""
    t = _translator(language)
    error = f'<p class="error" role="alert">{t(problem)}</p>' if problem else ""
    other = "en" if language == "zh" else "zh"
    return f"""<!doctype html>
<html lang="{HTML_LANGUAGE[language]}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{t("login.title")} · hallhub</title>
<style>
body {{ font-family: sans-serif; max-width: 24rem; margin: 3rem auto; color: #1b1b1b; }}
label {{ display: block; margin-top: 1rem; }}
input {{ font-size: 1rem; padding: .4rem; width: 100%; box-sizing: border-box; }}
button {{ margin-top: 1.2rem; font-size: 1rem; padding: .5rem 1.2rem; }}
.error {{ color: #8b0000; font-weight: bold; }}
</style></head><body>
<main>
<h1>{t("app.title")}</h1>
<h2>{t("login.title")}</h2>{error}
<form method="post" action="/login?lang={language}">
<label for="user">{t("login.user")}</label>
<input id="user" name="user" autocomplete="username" required>
<label for="password">{t("login.password")}</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">{t("login.submit")}</button>
</form>
<p><a href="/login?lang={other}" lang="{HTML_LANGUAGE[other]}">{_language_name(other)}</a></p>
</main></body></html>"""


def render_page(page: str, session: dict[str, Any], hub_id: str, device_id: str = "") -> str:
    """One console page's shell for the signed-in `session` (user, role, language, csrf)."""
    language = session["language"]
    t = _translator(language)
    body = _BODIES[page](t)
    title = t("device.detail") if device_id else t(f"nav.{page}")
    return f"""<!doctype html>
<html lang="{HTML_LANGUAGE[language]}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{html.escape(session.get("csrf") or "")}">
<meta name="user" content="{html.escape(session["user"])}">
<title>{html.escape(title)} · hallhub {html.escape(hub_id)}</title>
<link rel="stylesheet" href="/static/console.css">
<script id="messages" type="application/json">{_script_json(catalogue(language))}</script>
<script src="/static/console.js" defer></script>
</head><body data-page="{page}" data-device="{html.escape(device_id)}" data-live="connecting">
<a class="skip" href="#main">{t("skip")}</a>
<header>
<p class="brand">{t("app.title")} · {html.escape(hub_id)}</p>
{_navigation(page, t)}
<div class="who">
<span>{t("signed_in_as")}: {html.escape(session["user"])} ({html.escape(session["role"])})</span>
{_language_form(language, t)}
<button type="button" id="logout">{t("logout")}</button>
</div>
</header>
<div id="live-banner" class="banner" role="alert" hidden>{t("live.lost")}</div>
<main id="main">
<h1>{html.escape(title)}</h1>
{body}
</main>
</body></html>"""


def _navigation(current: str, t: Any) -> str:
    links = "".join(
        f'<li><a href="/ui/{page}"{" aria-current=page" if page == current else ""}>'
        f"{t(f'nav.{page}')}</a></li>"
        for page in PAGES
    )
    return f'<nav aria-label="{t("nav.label")}"><ul>{links}</ul></nav>'


def _language_form(language: str, t: Any) -> str:
    options = "".join(
        f'<option value="{code}"{" selected" if code == language else ""}>'
        f"{_language_name(code)}</option>"
        for code in HTML_LANGUAGE
    )
    return f'<label for="language">{t("language")}</label><select id="language">{options}</select>'


def _language_name(code: str) -> str:
    return {"zh": "中文", "en": "English"}[code]


def _translator(language: str) -> Any:
    messages = catalogue(language)

    def translate(key: str) -> str:
        return html.escape(messages.get(key, key))

    return translate


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no closing tag can be smuggled in)."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def _table(table_id: str, caption: str, columns: list[str], t: Any) -> str:
    heads = "".join(f'<th scope="col">{t(column)}</th>' for column in columns)
    return (
        f'<table id="{table_id}"><caption>{t(caption)}</caption>'
        f"<thead><tr>{heads}</tr></thead><tbody></tbody></table>"
    )


def _overview(t: Any) -> str:
    figures = "".join(
        f'<div class="figure"><dt>{t(key)}</dt><dd id="{name}">–</dd></div>'
        for name, key in (
            ("figure-alarms", "overview.open_alarms"),
            ("figure-queue", "overview.queue"),
            ("figure-ratings", "overview.ratings"),
            ("figure-lag", "overview.sync_lag"),
        )
    )
    return (
        f'<dl class="figures">{figures}</dl>'
        + _table(
            "open-alarms",
            "overview.open_alarms",
            ["col.id", "col.severity", "col.device", "col.message", "col.state"],
            t,
        )
        + _table(
            "health",
            "overview.health",
            ["col.floor", "col.zone", "col.online", "col.offline"],
            t,
        )
    )


def _devices(t: Any) -> str:
    return (
        '<form class="filters" role="search" onsubmit="return false">'
        f'<label for="device-search">{t("devices.search")}</label>'
        '<input id="device-search" type="search">'
        f'<label for="device-state">{t("devices.filter_state")}</label>'
        f'<select id="device-state"><option value="">{t("devices.all")}</option>'
        f'<option value="online">{t("state.online")}</option>'
        f'<option value="offline">{t("state.offline")}</option>'
        f'<option value="pending">{t("state.pending")}</option></select></form>'
        + _table(
            "devices",
            "nav.devices",
            ["col.device", "col.kind", "col.floor", "col.zone", "col.state", "col.last_values"],
            t,
        )
        + _table(
            "pending",
            "devices.pending",
            ["col.device", "col.kind", "col.zone", "col.actions"],
            t,
        )
    )


def _device(t: Any) -> str:
    return (
        f'<section aria-labelledby="h-health"><h2 id="h-health">{t("device.health")}</h2>'
        '<p id="device-health">–</p>'
        f'<h2 id="h-drift">{t("device.drift")}</h2><p id="device-drift">–</p></section>'
        + _table("last-values", "col.last_values", ["col.setting", "col.value"], t)
        + f'<section aria-labelledby="h-chart"><h2 id="h-chart">{t("device.history")}</h2>'
        '<div id="chart"></div></section>'
        + f'<section aria-labelledby="h-command"><h2 id="h-command">{t("device.command")}</h2>'
        '<form id="command-form">'
        f'<label for="command-name">{t("device.command_name")}</label>'
        '<input id="command-name" required>'
        f'<button type="submit">{t("action.command")}</button></form>'
        '<p id="command-result" role="status"></p></section>'
        + _table("settings", "device.settings", ["col.setting", "col.value", "col.source"], t)
    )


def _alerts(t: Any) -> str:
    return (
        _table(
            "alerts",
            "alerts.open",
            [*ALERT_COLUMNS, "col.count", "col.actions"],
            t,
        )
        + f'<section aria-labelledby="h-silence"><h2 id="h-silence">{t("alerts.silence")}</h2>'
        '<form id="silence-form">'
        f'<label for="silence-scope">{t("alerts.scope")}</label>'
        '<select id="silence-scope"><option value="device">device</option>'
        '<option value="zone">zone</option><option value="kind">kind</option></select>'
        f'<label for="silence-value">{t("alerts.value")}</label>'
        '<input id="silence-value" required>'
        f'<label for="silence-minutes">{t("alerts.minutes")}</label>'
        '<input id="silence-minutes" type="number" min="1" value="30" required>'
        f'<button type="submit">{t("action.silence")}</button></form>'
        '<p id="silence-result" role="status"></p></section>'
    )


def _queue(t: Any) -> str:
    return (
        '<p id="queue-status" role="status"></p>'
        f'<p>{t("queue.issued_today")}: <strong id="issued-today">–</strong></p>'
        + _table(
            "categories",
            "queue.categories",
            ["col.category", "col.waiting", "col.average_wait"],
            t,
        )
        + _table("windows", "queue.windows", ["col.window", "col.state", "col.serving"], t)
    )


def _ratings(t: Any) -> str:
    return (
        '<p id="ratings-status" role="status"></p>'
        f'<p>{t("ratings.unrated")}: <strong id="unrated">–</strong></p>'
        + _table("distribution", "ratings.distribution", ["col.level", "col.count"], t)
        + _table(
            "bad-ratings",
            "ratings.bad",
            ["col.id", "col.window", "col.level", "col.contact_due", "col.fix_due"],
            t,
        )
    )


def _sync(t: Any) -> str:
    return (
        '<p id="sync-status" role="status"></p>'
        + _table(
            "lanes",
            "sync.lanes",
            ["col.lane", "col.backlog", "col.lag", "col.last_ack"],
            t,
        )
        + _table("set-aside", "sync.set_aside", ["col.state", "col.reason", "col.count"], t)
    )


def _rules(t: Any) -> str:
    return (
        _table(
            "rules",
            "rules.list",
            ["col.rule", "col.description", "col.enabled", "col.actions"],
            t,
        )
        + f'<section aria-labelledby="h-change"><h2 id="h-change">{t("rules.change")}</h2>'
        '<form id="rule-form">'
        f'<label for="rule-text">{t("rules.candidate")}</label>'
        '<textarea id="rule-text" rows="10" cols="70" required></textarea>'
        f'<label for="rule-from">{t("rules.from")}</label><input id="rule-from" type="date">'
        f'<label for="rule-to">{t("rules.to")}</label><input id="rule-to" type="date">'
        f'<button type="button" id="rule-validate">{t("action.validate")}</button>'
        f'<button type="button" id="rule-preview">{t("action.preview")}</button></form>'
        '<pre id="rule-result" role="status"></pre></section>'
    )


_BODIES = {
    "overview": _overview,
    "devices": _devices,
    "device": _device,
    "alerts": _alerts,
    "queue": _queue,
    "ratings": _ratings,
    "sync": _sync,
    "rules": _rules,
}
