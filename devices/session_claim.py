"""Which hub process holds the MQTT session, so two hubs with one client id notice.

Two hubs started with the same client id share one broker session: each connect
closes the other's connection, and the loser reconnects a second later, forever.
Mosquitto 2.0 closes the old connection without sending DISCONNECT 0x8E (Session
taken over), so the hub cannot learn it from the reason code.

So each hub process claims the session with a retained marker holding a random
token, ``<topic root>/_hub/<client id>`` (three levels, outside the device filter).
On its first connect a process writes its token; on every reconnect it first reads
the marker. A foreign token there means another process connected with our id
after us: this one stays off and raises an alert rather than take the session back.
Device messages that arrive during that check are held back, unacknowledged, so a
hub that steps aside journals none of the other hub's messages.
"""

from __future__ import annotations

import enum
import re
import secrets

MARKER_FOLDER = "_hub"


class Claim(enum.Enum):
    """Where this process stands with the shared session."""

    WRITING = "writing"  # first connect: our marker is on its way
    CHECKING = "checking"  # reconnect: waiting for the marker to say whose it is
    HELD = "held"
    LOST = "lost"


class SessionClaim:
    """This process's claim on its client id's broker session."""

    def __init__(self, topic_root: str, client_id: str) -> None:
        safe_id = re.sub(r"[^A-Za-z0-9_-]", "_", client_id)
        self.topic = f"{topic_root}/{MARKER_FOLDER}/{safe_id}"
        self.token = secrets.token_hex(8).encode()
        self.state = Claim.WRITING
        self._connected_before = False

    def on_connect(self) -> Claim:
        """Start a claim for a new connection; WRITING means publish our token now."""
        if self.state is Claim.LOST:
            return self.state
        self.state = Claim.CHECKING if self._connected_before else Claim.WRITING
        self._connected_before = True
        return self.state

    def on_marker(self, payload: bytes) -> Claim:
        """Judge a marker the broker delivered: ours, stale, or another hub's."""
        if self.state is Claim.LOST or not payload:
            return self.state
        if payload == self.token:
            self.state = Claim.HELD
        elif self.state is Claim.CHECKING:
            self.state = Claim.LOST  # someone connected as us since our last connection
        return self.state  # WRITING: a stale marker from an earlier process

    def on_no_marker(self) -> Claim:
        """No marker came back in time (a broker that lost its store): claim anew."""
        if self.state is Claim.CHECKING:
            self.state = Claim.WRITING
        return self.state
