"""Servers the channel tests run themselves: a modem on a pty pair, SMTP, a webhook."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devices.simulators.gsm_modem import SimulatedModem
from tests.conftest import LOOPBACK, free_port
from tests.serial_lines import pty_pair


@contextmanager
def simulated_modem(folder: Path) -> Iterator[tuple[str, SimulatedModem]]:
    """A simulated GSM modem answering on a pty; yields the port the hub opens."""
    with pty_pair(folder, ("ttyHUB", "ttyMODEM")) as (hub_end, modem_end):
        modem = SimulatedModem(modem_end)
        modem.start()
        try:
            yield hub_end, modem
        finally:
            modem.stop()


class _Mailbox:
    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        content = envelope.content
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), text))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[tuple[str, list[str], str]]]]:
    """A real SMTP server (aiosmtpd) on loopback; yields its port and the mail it got."""
    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname=LOOPBACK, port=port)
    controller.start()
    try:
        yield port, mailbox.received
    finally:
        controller.stop()


@contextmanager
def webhook_receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A local HTTP server standing in for a chat robot; yields its port and posts."""
    posts: list[dict[str, Any]] = []

    class Robot(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            posts.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer((LOOPBACK, 0), Robot)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver")
    thread.start()
    try:
        yield server.server_address[1], posts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
