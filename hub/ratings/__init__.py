"""好差评 ratings: intake, one rating per case, follow-up tasks, the hash chain, privacy.

Modules, each owning one thing:

* `levels` (the five level names, channels, codes per target system), `settings`
  (the ``ratings:`` section), `errors`;
* `digests` (SHA-256 or SM3, and HMAC over either), `chain` (links and the check
  that names a tampered rating), `privacy` (citizen lookup keys, masked names);
* `store` (the tables), `desk` (the service: intake, cases, sweeps), `tasks`
  (follow-up tasks: due dates, steps, overdue alerts),
  `views` (what the API and CLI show), `api` (console routes), `cli`
  (``hallhub ratings``).
"""

from hub.ratings.chain import ChainBreak, canonical, find_breaks, genesis, next_link
from hub.ratings.desk import RatingDesk, case_key_of
from hub.ratings.digests import SHA256, SM3, Digest, digest_named
from hub.ratings.errors import (
    ChainError,
    RatingError,
    RatingRejected,
    TaskNotFoundError,
    TaskStateError,
)
from hub.ratings.levels import BAD_LEVELS, CHANNELS, LEVELS, LevelCodes
from hub.ratings.privacy import CitizenKeys, mask_name
from hub.ratings.settings import RatingsSection
from hub.ratings.store import RatingInput
from hub.ratings.tasks import FollowUpTasks

__all__ = [
    "BAD_LEVELS",
    "CHANNELS",
    "LEVELS",
    "SHA256",
    "SM3",
    "ChainBreak",
    "ChainError",
    "CitizenKeys",
    "Digest",
    "FollowUpTasks",
    "LevelCodes",
    "RatingDesk",
    "RatingError",
    "RatingInput",
    "RatingRejected",
    "RatingsSection",
    "TaskNotFoundError",
    "TaskStateError",
    "canonical",
    "case_key_of",
    "digest_named",
    "find_breaks",
    "genesis",
    "mask_name",
    "next_link",
]
