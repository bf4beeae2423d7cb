"""TLS between hub and city: a private CA as trust anchor, optional client certificates.

The hub trusts only the city's private CA (never the system store: a city receiver
is not a public web site), and may present a client certificate for mutual TLS.
The receiver side is a `ServerTls` handed to uvicorn. `days_until_expiry` feeds
the hub's alert 30 days before its client certificate runs out.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from hub.clock import Clock
from hub.errors import ConfigError

logger = logging.getLogger(__name__)

EXPIRY_WARNING_DAYS = 30
EXPIRY_CHECK_SECONDS = 3600.0
SECONDS_PER_DAY = 86_400.0

ExpiryAlert = Callable[[Path, float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What the hub needs to reach the city over HTTPS."""

    ca_file: Path
    client_cert: Path | None = None
    client_key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """An SSL context trusting only the private CA, with the client certificate."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file))
            if self.client_cert is not None:
                key = str(self.client_key) if self.client_key is not None else None
                context.load_cert_chain(str(self.client_cert), key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(str(self.ca_file), [f"cannot load TLS material: {exc}"]) from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


class ReloadingClientTls:
    """`ClientTls` read again when its files change: a renewed client certificate is
    presented from the next connection on, without a hub restart.

    A rewrite that does not load (a key written after its certificate, say) keeps
    the last good context until the files load again.
    """

    def __init__(self, tls: ClientTls) -> None:
        self._tls = tls
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._context: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        """The context for the files as they are now."""
        stamp = self._stamp_now()
        if self._context is None or stamp != self._stamp:
            try:
                context = self._tls.context()
            except ConfigError:
                if self._context is None:
                    raise
                logger.exception("TLS files changed but do not load; keeping the last ones")
                return self._context
            if self._context is not None:
                logger.info("TLS files changed; new connections use them")
            self._context, self._stamp = context, stamp
        return self._context

    def _stamp_now(self) -> tuple[tuple[int, int], ...]:
        paths = (self._tls.ca_file, self._tls.client_cert, self._tls.client_key)
        stamps = []
        for path in paths:
            try:
                status = path.stat() if path is not None else None
            except OSError:
                status = None
            stamps.append((status.st_mtime_ns, status.st_size) if status else (0, 0))
        return tuple(stamps)


@dataclass(frozen=True, slots=True)
class ServerTls:
    """The receiver's certificate, and the CA its clients must present, if any."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None

    def uvicorn_options(self) -> dict[str, object]:
        """Keyword arguments for `uvicorn.Config`."""
        options: dict[str, object] = {
            "ssl_certfile": str(self.cert_file),
            "ssl_keyfile": str(self.key_file),
        }
        if self.client_ca is not None:
            options["ssl_ca_certs"] = str(self.client_ca)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return options


def certificate_not_after(path: Path) -> float:
    """When the PEM certificate at `path` expires, as Unix seconds."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), [f"not a readable PEM certificate: {exc}"]) from exc
    return certificate.not_valid_after_utc.timestamp()


def days_until_expiry(path: Path, now: float) -> float:
    """Days left before the certificate at `path` expires (negative once expired)."""
    return (certificate_not_after(path) - now) / SECONDS_PER_DAY


class CertificateWatch:
    """Raises an alert once a certificate is within `warn_days` of expiring.

    The alert is called on every check inside that window; the hub's alert
    service counts repeats of an open alert rather than opening new ones.
    """

    def __init__(
        self,
        path: Path,
        clock: Clock,
        alert: ExpiryAlert,
        *,
        warn_days: float = EXPIRY_WARNING_DAYS,
        interval: float = EXPIRY_CHECK_SECONDS,
    ) -> None:
        self._path = path
        self._clock = clock
        self._alert = alert
        self._warn_days = warn_days
        self._interval = interval

    async def check(self) -> float:
        """Days left; the alert has been called if that is within the window."""
        days = days_until_expiry(self._path, self._clock.wall())
        if days <= self._warn_days:
            logger.warning("certificate %s expires in %.1f days", self._path, days)
            await self._alert(self._path, days)
        return days

    async def run(self) -> None:
        """Check now and then every `interval` seconds until cancelled."""
        while True:
            try:
                await self.check()
            except ConfigError as exc:
                logger.error("cannot check certificate expiry: %s", exc)
            await self._clock.sleep(self._interval)
