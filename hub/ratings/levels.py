"""The five rating levels (GB/T 39735-2020), channels, and codes per target system.

Level names are what the hub stores and sends. Numeric codes belong to the system a
rating is reported to: the national data standard (GB/T 39046-2020) numbers
非常满意 as 1, many provincial systems number it 5. So a code is looked up per
target at the edge, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping

LEVELS: tuple[str, ...] = ("非常满意", "满意", "基本满意", "不满意", "非常不满意")
# The last two levels are bad ratings (差评): each opens a follow-up task.
BAD_LEVELS = frozenset(LEVELS[3:])
# Counted for a case left unrated, where the province's policy says so.
DEFAULT_LEVEL = "基本满意"

CHANNELS: tuple[str, ...] = ("hall_pad", "qr_code", "app", "sms")
# The channel of a rating the hub made itself under the unrated-case policy.
DEFAULT_POLICY_CHANNEL = "unrated_policy"

SHIPPED_TARGETS: dict[str, dict[str, int]] = {
    "gbt39046": {level: code for code, level in enumerate(LEVELS, start=1)},
    "provincial5": {level: code for code, level in enumerate(reversed(LEVELS), start=1)},
}


def check_code_map(target: str, codes: Mapping[str, int]) -> None:
    """Raise ValueError unless `codes` gives each of the five levels its own code."""
    missing = [level for level in LEVELS if level not in codes]
    unknown = [name for name in codes if name not in LEVELS]
    if missing or unknown:
        raise ValueError(f"target {target}: missing levels {missing}, unknown names {unknown}")
    if len(set(codes.values())) != len(LEVELS):
        raise ValueError(f"target {target}: two levels share a code")


class LevelCodes:
    """Level name to numeric code, for each target system the hall reports to."""

    def __init__(self, extra: Mapping[str, Mapping[str, int]] | None = None) -> None:
        self._targets = {name: dict(codes) for name, codes in SHIPPED_TARGETS.items()}
        for name, codes in (extra or {}).items():
            check_code_map(name, codes)
            self._targets[name] = dict(codes)

    def targets(self) -> list[str]:
        return sorted(self._targets)

    def code(self, target: str, level: str) -> int:
        """The code `target` uses for `level`; KeyError names what is unknown."""
        if target not in self._targets:
            raise KeyError(f"unknown rating target {target!r}; known: {self.targets()}")
        if level not in self._targets[target]:
            raise KeyError(f"unknown rating level {level!r}")
        return self._targets[target][level]

    def codes_for(self, level: str) -> dict[str, int]:
        """`level`'s code in every target."""
        return {target: self.code(target, level) for target in self.targets()}
