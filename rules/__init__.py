"""Local rules: the hall keeps deciding with the city link cut.

Public API: `RulesEngine` decides, `RuleRunner` applies in the hub, `load_layers`
reads the pack, city and hall layers, `replay_preview` tries a candidate rule set
against the journal.
"""

from rules.actions import (
    Action,
    ClearCondition,
    CommandDevice,
    EmitEvent,
    PublishMessage,
    RaiseCondition,
    SetZoneState,
)
from rules.engine import Firing, RulesEngine, RuleTime
from rules.layers import RuleFilesWatcher, RuleSet, hall_layers, load_layers, shipped_pack

__all__ = [
    "Action",
    "ClearCondition",
    "CommandDevice",
    "EmitEvent",
    "Firing",
    "PublishMessage",
    "RaiseCondition",
    "RuleFilesWatcher",
    "RuleSet",
    "RuleTime",
    "RulesEngine",
    "SetZoneState",
    "hall_layers",
    "load_layers",
    "shipped_pack",
]
