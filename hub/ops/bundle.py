"""The offline bundle: everything a hall box without internet needs to install hallhub.

Built on a machine with access to the package registries, from a hallhub source
tree. The bundle holds ``wheels/`` (hallhub and every dependency, as wheels),
``debs/`` (the Debian packages hallhub runs with, from ``apt-get download``) and
``install.sh``, which installs into ``/opt/hallhub/releases/<version>`` with
``pip install --no-index`` and moves the ``current`` symlink, keeping the previous
release for ``install.sh --rollback``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from hub.errors import HallhubError

logger = logging.getLogger(__name__)

# What hallhub runs with on the box: the broker, serial line tools, venv support.
DEBIAN_PACKAGES = ("mosquitto", "socat", "python3-venv", "sqlite3")
INSTALL_SCRIPT = "install.sh"

_INSTALL_SH = r"""#!/bin/sh
# Install hallhub from this offline bundle; no network needed.
#   sh install.sh             install this bundle's release and make it current
#   sh install.sh --rollback  make the previous release current again
# PREFIX (default /opt/hallhub) holds releases/<version> and the current symlink.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/opt/hallhub}
VERSION=$(cat "$HERE/VERSION")
RELEASES="$PREFIX/releases"

if [ "${1:-}" = "--rollback" ]; then
    previous=$(readlink "$PREFIX/previous" 2>/dev/null || true)
    [ -n "$previous" ] || { echo "no previous release to roll back to" >&2; exit 1; }
    current=$(readlink "$PREFIX/current")
    ln -sfn "$previous" "$PREFIX/current.new" && mv -T "$PREFIX/current.new" "$PREFIX/current"
    ln -sfn "$current" "$PREFIX/previous"
    echo "current release is now $previous"
    exit 0
fi

if [ "${SKIP_DEBS:-0}" != 1 ] && ls "$HERE"/debs/*.deb >/dev/null 2>&1; then
    # apt takes the local files and skips what is installed already; no network.
    apt-get install -y --no-install-recommends --no-download "$HERE"/debs/*.deb
fi

target="$RELEASES/$VERSION"
mkdir -p "$RELEASES"
rm -rf "$target.partial"
python3 -m venv "$target.partial"
# No pip configuration of the box or the shell may add an index or other wheel folders.
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL PIP_CONFIG_FILE=/dev/null \
    "$target.partial/bin/pip" install --no-index --find-links "$HERE/wheels" "hallhub==$VERSION"
rm -rf "$target"
mv "$target.partial" "$target"
# venv scripts carry the folder they were made in: point them at the final one.
sed -i "s#$target.partial#$target#g" "$target"/bin/* 2>/dev/null || true

if [ -L "$PREFIX/current" ] && [ "$(readlink "$PREFIX/current")" != "$target" ]; then
    ln -sfn "$(readlink "$PREFIX/current")" "$PREFIX/previous"
fi
ln -sfn "$target" "$PREFIX/current.new" && mv -T "$PREFIX/current.new" "$PREFIX/current"
echo "hallhub $VERSION installed in $target; current -> $target"
"""


class BundleError(HallhubError):
    """The bundle could not be built. Carries the step that failed."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        super().__init__(f"bundle: {step} failed: {reason}")


def source_tree() -> Path:
    """The hallhub source tree this code runs from (it has pyproject.toml)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").exists():
        raise BundleError("finding the source tree", f"no pyproject.toml in {root}")
    return root


def build_bundle(destination: Path, *, with_debs: bool = True) -> Path:
    """Build the bundle into `destination` (created); returns it."""
    destination.mkdir(parents=True, exist_ok=True)
    version = metadata.version("hallhub")
    build_wheelhouse(source_tree(), destination / "wheels")
    if with_debs:
        packages = download_debs(destination / "debs")
        logger.info("Debian packages in the bundle: %s", " ".join(packages))
    write_install_script(destination, version)
    logger.info("offline bundle of hallhub %s in %s", version, destination)
    return destination


def write_install_script(destination: Path, version: str) -> Path:
    """Write ``install.sh`` and the ``VERSION`` it installs into `destination`."""
    destination.mkdir(parents=True, exist_ok=True)
    (destination / "VERSION").write_text(version + "\n", encoding="utf-8")
    script = destination / INSTALL_SCRIPT
    script.write_text(_INSTALL_SH, encoding="utf-8")
    script.chmod(0o755)
    return script


def build_wheelhouse(source: Path, wheels: Path) -> None:
    """Wheels of hallhub at `source` and of every runtime dependency into `wheels`."""
    wheels.mkdir(parents=True, exist_ok=True)
    _run(
        "building the wheelhouse",
        [sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(source)],
    )


def download_debs(folder: Path) -> list[str]:
    """The Debian packages hallhub needs, with their dependencies, into `folder`.

    Packages of priority required or important (dpkg, tar, perl-base, …) are on every
    Debian system and are left out, as are the alternatives of a dependency (elogind
    for systemd). Libraries already installed are skipped by apt at install time.
    """
    folder.mkdir(parents=True, exist_ok=True)
    closure = sorted(_dependency_closure(DEBIAN_PACKAGES) - _base_system(DEBIAN_PACKAGES))
    _run("downloading Debian packages", ["apt-get", "download", *closure], cwd=folder)
    return closure


def _dependency_closure(packages: tuple[str, ...]) -> set[str]:
    listing = _run(
        "resolving Debian dependencies",
        [
            "apt-cache",
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            *packages,
        ],
    )
    found = set(packages)
    for line in listing.splitlines():
        kind, _, name = line.strip().partition(": ")
        # Alternatives sit on further-indented lines without a kind; they are skipped.
        if kind in ("Depends", "PreDepends") and not name.startswith("<"):
            found.add(name)
    return found


def _base_system(packages: tuple[str, ...]) -> set[str]:
    closure = _dependency_closure(packages)
    shown = _run(
        "reading package priorities", ["apt-cache", "show", "--no-all-versions", *sorted(closure)]
    )
    base: set[str] = set()
    name = ""
    for line in shown.splitlines():
        if line.startswith("Package: "):
            name = line.removeprefix("Package: ")
        elif line.startswith("Priority: ") and line.split()[1] in ("required", "important"):
            base.add(name)
    return base


def _run(step: str, command: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise BundleError(step, f"{command[0]} not found") from exc
    except subprocess.CalledProcessError as exc:
        raise BundleError(step, exc.stderr.strip()[-2000:]) from exc
    return done.stdout
