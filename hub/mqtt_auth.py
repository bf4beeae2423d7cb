"""MQTT credentials and access rules for the hall's broker, made from the registry.

`hallhub mqtt-acl` writes three files into one folder (mode 0600 each):

* ``mosquitto.passwd``: one ``user:hash`` line per account, in Mosquitto's own
  PBKDF2-SHA512 format (``$7$``), so ``mosquitto_passwd`` is not needed;
* ``mosquitto.acl``: what each account may read and write;
* ``mqtt-credentials.yaml``: the clear passwords, to configure each device with.
  Running the command again keeps existing passwords, adds new devices (from the
  configuration, and those commissioned through the console) and drops retired ones.

Accounts: the hub (``hub``) reads and writes everything; each device, named by its
id, may publish only under ``<topic root>/<device id>/`` and read its commands there;
each crew team's handsets (``crew-<team>``) read their team's alerts and publish
acknowledgements only on their team's ``acks`` topic.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from hub.config import HubConfig
from hub.errors import MqttAuthError
from hub.privatefile import write_private

logger = logging.getLogger(__name__)

HUB_USER = "hub"
PASSWORD_FILE = "mosquitto.passwd"
ACL_FILE = "mosquitto.acl"
CREDENTIALS_FILE = "mqtt-credentials.yaml"
HUB_PASSWORD_FILE = "hub-mqtt-password"
# Mosquitto 2.0's mosquitto_passwd: PBKDF2-HMAC-SHA512, 12-byte salt, 101 rounds.
HASH_ITERATIONS = 101
SALT_BYTES = 12


# Teams become MQTT user names and topic levels: no wildcards, separators or spaces.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Always present: hall IT hears about the hub's own troubles (a second hub, say).
HALL_IT_TEAM = "hall_it"


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """Who the broker lets in, and where each may publish and subscribe."""

    topic_root: str
    crew_topic_root: str
    hub_id: str
    device_ids: list[str]
    teams: list[str]

    def accounts(self) -> list[str]:
        return [HUB_USER, *self.device_ids, *(crew_user(team) for team in self.teams)]

    def acl_text(self) -> str:
        """The Mosquitto ACL file: everything not granted here is refused."""
        lines = ["# Written by `hallhub mqtt-acl`; edits here are overwritten.", ""]
        lines += [f"user {HUB_USER}", "topic readwrite #", ""]
        for device_id in self.device_ids:
            lines += [
                f"user {device_id}",
                f"topic write {self.topic_root}/{device_id}/#",
                f"topic read {self.topic_root}/{device_id}/command/#",
                "",
            ]
        for team in self.teams:
            crews = f"{self.crew_topic_root}/{self.hub_id}/crews/{team}"
            lines += [
                f"user {crew_user(team)}",
                f"topic read {crews}/alerts",
                f"topic write {crews}/acks",
                "",
            ]
        return "\n".join(lines)


def plan_for(
    config: HubConfig, teams: set[str], commissioning: Mapping[str, str] | None = None
) -> AccessPlan:
    """The access plan for a hall: its devices, and the crew teams its rules alert.

    `commissioning` maps device ids to the state hall IT last gave them through the
    console or CLI (``commissioned`` or ``retired``): those devices get an account,
    these lose theirs, whatever the configuration file lists.
    """
    states = commissioning or {}
    configured = [device.id for device in config.devices]
    device_ids = [device_id for device_id in configured if states.get(device_id) != "retired"]
    device_ids += sorted(
        device_id
        for device_id, state in states.items()
        if state == "commissioned" and device_id not in configured
    )
    chosen = sorted(teams | {HALL_IT_TEAM})
    unsafe = [team for team in chosen if not _SAFE_NAME.match(team)]
    if unsafe:
        raise MqttAuthError(f"team names unusable as MQTT user names: {unsafe}")
    return AccessPlan(
        topic_root=config.mqtt.topic_root,
        crew_topic_root=config.mqtt.crew_topic_root,
        hub_id=config.hub.id,
        device_ids=device_ids,
        teams=chosen,
    )


def crew_user(team: str) -> str:
    return f"crew-{team}"


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A password hash Mosquitto 2.0 accepts in its password file."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${HASH_ITERATIONS}${encoded_salt}${base64.b64encode(digest).decode()}"


def write_auth_files(plan: AccessPlan, folder: Path) -> dict[str, str]:
    """Write the password, ACL and credentials files; return the passwords by account."""
    passwords = _keep_or_create_passwords(folder / CREDENTIALS_FILE, plan.accounts())

    password_lines = [f"{user}:{hash_password(password)}" for user, password in passwords.items()]
    _write_private(folder / PASSWORD_FILE, "\n".join(password_lines) + "\n")
    _write_private(folder / ACL_FILE, plan.acl_text())
    _write_private(folder / CREDENTIALS_FILE, yaml.safe_dump(passwords, sort_keys=False))
    _write_private(folder / HUB_PASSWORD_FILE, passwords[HUB_USER] + "\n")

    logger.info("wrote MQTT credentials for %d accounts to %s", len(passwords), folder)
    return passwords


def _keep_or_create_passwords(path: Path, accounts: list[str]) -> dict[str, str]:
    known: dict[str, str] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise MqttAuthError(f"cannot read {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise MqttAuthError(f"{path}: expected a mapping of account to password")
        known = {str(user): str(password) for user, password in loaded.items()}
    return {user: known.get(user) or secrets.token_urlsafe(24) for user in accounts}


def _write_private(path: Path, text: str) -> None:
    try:
        write_private(path, text)
    except OSError as exc:
        raise MqttAuthError(f"cannot write {path}: {exc}") from exc
