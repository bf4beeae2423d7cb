"""Talking to a running hub's console API from the command line, with its API token.

The CLI never opens the journal of a running hub: the hub stays its only writer,
every change is audited and announced, and the CLI shows what the console shows.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import httpx

from hub.errors import HallhubError

logger = logging.getLogger(__name__)

TIMEOUT = 30.0


class ConsoleUnreachableError(HallhubError):
    """The hub's console could not be reached, or refused the request."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(f"{url}: {reason}")


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """--config, --url and --token-file: where the hub is and how to prove who we are."""
    parser.add_argument("--config", type=Path, metavar="FILE", help="the hub's configuration")
    parser.add_argument("--url", help="console URL (default: from --config)")
    parser.add_argument("--token-file", type=Path, help="API token file (default: from --config)")


class ConsoleClient:
    """A small synchronous client of the console API."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
            trust_env=False,
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConsoleClient:
        """The client for --config, or --url with --token-file."""
        url, token_file = args.url, args.token_file
        if args.config is not None:
            from hub.config import load_config

            config = load_config(args.config)
            url = url or f"http://{config.console.host}:{config.console.port}"
            token_file = (
                token_file or config.console.token_file or config.hub.state_dir / "api-token"
            )
        if url is None or token_file is None:
            raise HallhubError("give --config FILE, or both --url and --token-file")
        try:
            token = token_file.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise HallhubError(f"cannot read the API token from {token_file}: {exc}") from exc
        return cls(url, token)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """The JSON answer of one request; raises with the hub's error message."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ConsoleUnreachableError(self.url + path, f"cannot reach the hub: {exc}") from exc
        try:
            reply = response.json()
        except ValueError:
            reply = {"error": response.text[:200]}
        if response.is_error:
            error = reply.get("error", reply) if isinstance(reply, dict) else reply
            raise ConsoleUnreachableError(
                self.url + path, f"HTTP {response.status_code}: {error}", response.status_code
            )
        return reply

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ConsoleClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
