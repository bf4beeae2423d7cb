"""Errors of the ratings service.

::

    HallhubError
    └── RatingError
        ├── RatingRejected        a rating refused for its content (kept in rating_rejects)
        ├── TaskNotFoundError     no follow-up task with that id
        ├── TaskStateError        a task step out of order (fixed before contacted, twice)
        └── ChainError            the chain cannot be extended or checked (algorithm mismatch)
"""

from __future__ import annotations

from hub.errors import HallhubError


class RatingError(HallhubError):
    """Something the ratings service cannot do."""


class RatingRejected(RatingError):
    """A rating refused for its content; `reason` is a short code, `detail` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class TaskNotFoundError(RatingError):
    """No follow-up task with this id."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"no follow-up task {task_id}")


class TaskStateError(RatingError):
    """A follow-up step that does not fit the task's state."""

    def __init__(self, task_id: int, state: str, step: str) -> None:
        self.task_id = task_id
        self.state = state
        self.step = step
        super().__init__(f"task {task_id} is {state}; cannot record {step}")


class ChainError(RatingError):
    """The rating chain cannot be extended or checked as asked."""
