"""Running hallhub for years on one hall box: the operations toolkit.

Each module owns one job: `settings` (the ``operations:`` section of the hall
configuration), `systemd` (the unit file and the sd_notify watchdog), `readiness`
(``/readyz``), `migrations` (journal schema versions), `walguard` (bounded WAL),
`backup` (consistent copies and restore with a new epoch), `retention` (pruning
and disk figures), `logsetup` (text or JSON logs, levels per module) and `bundle`
(the offline install bundle).
"""
