"""Which team an alert goes to: by device kind, floor or zone, and severity."""

from __future__ import annotations

from dataclasses import dataclass

from hub.alerts.settings import Route


@dataclass(frozen=True, slots=True)
class DevicePlace:
    """What routing and silences need to know about the device behind an alert."""

    kind: str = ""
    zone: str = ""
    floor: int | None = None


class Router:
    """The first configured route matching the alert wins; otherwise the rule's team."""

    def __init__(self, routes: list[Route]) -> None:
        self._routes = routes

    def team_for(self, place: DevicePlace, severity: str, rule_team: str) -> str:
        for route in self._routes:
            if _matches(route, place, severity):
                return route.team
        return rule_team


def _matches(route: Route, place: DevicePlace, severity: str) -> bool:
    checks = (
        (route.kind, place.kind),
        (route.zone, place.zone),
        (route.floor, place.floor),
        (route.severity, severity),
    )
    return all(wanted is None or wanted == actual for wanted, actual in checks)
