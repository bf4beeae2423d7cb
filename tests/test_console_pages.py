"""The console's pages and message catalogues: every label exists in both languages."""

from __future__ import annotations

import re
from importlib import resources

from hub.console_web.pages import PAGES, catalogue, render_page

WEB = resources.files("hub.console_web")


def test_both_languages_have_every_label_the_console_uses() -> None:
    """Chinese and English carry the same keys, and every key the pages and the script
    ask for is in them, so no page shows a bare key to hall IT."""
    script = (WEB / "static" / "console.js").read_text(encoding="utf-8")
    pages = (WEB / "pages.py").read_text(encoding="utf-8")
    used = set(re.findall(r'\bt\(\s*"([a-z_.]+)"', script + pages))
    used |= set(re.findall(r'"((?:col|state|action|nav|device|alerts)\.[a-z_]+)"', pages))

    assert catalogue("zh").keys() == catalogue("en").keys()
    assert used - catalogue("zh").keys() == set()
    assert len(used) > 40


def test_pages_are_labelled_in_the_session_language_and_escape_what_they_show() -> None:
    """Each page names itself in the chosen language, and a user or hub id is escaped."""
    for language, overview in (("zh", "总览"), ("en", "Overview")):
        session = {"user": "<b>x</b>", "role": "viewer", "language": language, "csrf": "c"}
        rendered = {page: render_page(page, session, "hall&1") for page in PAGES}
        assert f"<h1>{overview}</h1>" in rendered["overview"]
        assert all("&lt;b&gt;x&lt;/b&gt;" in text for text in rendered.values())
        assert all("hall&amp;1" in text and "<b>x</b>" not in text for text in rendered.values())
