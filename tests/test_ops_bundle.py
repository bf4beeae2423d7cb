"""The offline bundle's install script: releases side by side, rollback by symlink.

Building the bundle and installing its wheelhouse with ``pip --no-index`` takes
about 30 s and needs the package registries to build, so it is checked by
``scripts/check_bundle.sh`` rather than here; this test runs the real install
script's rollback on a release tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hub.ops.bundle import write_install_script


def make_release(prefix: Path, version: str) -> Path:
    release = prefix / "releases" / version
    (release / "bin").mkdir(parents=True)
    hallhub = release / "bin" / "hallhub"
    hallhub.write_text(f"#!/bin/sh\necho {version}\n")
    hallhub.chmod(0o755)
    return release


def run_script(script: Path, prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), *args],
        env={"PREFIX": str(prefix), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rollback_switches_current_back_to_the_kept_release(tmp_path: Path) -> None:
    """After an upgrade left `previous` pointing at the old release, --rollback makes it
    current again, and a second --rollback goes forward once more; nothing is deleted."""
    prefix = tmp_path / "opt"
    old, new = make_release(prefix, "0.1.0"), make_release(prefix, "0.2.0")
    (prefix / "current").symlink_to(new)
    (prefix / "previous").symlink_to(old)
    script = write_install_script(tmp_path / "bundle", "0.2.0")

    back = run_script(script, prefix, "--rollback")
    current_after_back = (prefix / "current").resolve()
    forth = run_script(script, prefix, "--rollback")

    assert back.returncode == 0, back.stderr
    assert current_after_back == old
    assert forth.returncode == 0, forth.stderr
    assert (prefix / "current").resolve() == new
    assert (prefix / "previous").resolve() == old
    assert old.exists() and new.exists()


def test_rollback_without_a_previous_release_is_refused(tmp_path: Path) -> None:
    """A first install has nothing to roll back to: the script says so and fails."""
    prefix = tmp_path / "opt"
    (prefix).mkdir()
    (prefix / "current").symlink_to(make_release(prefix, "0.1.0"))
    script = write_install_script(tmp_path / "bundle", "0.1.0")

    result = run_script(script, prefix, "--rollback")

    assert result.returncode == 1
    assert "no previous release" in result.stderr
