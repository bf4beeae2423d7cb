#!/bin/sh
# Build the offline bundle and install it with no index into a scratch prefix, as an
# upgrade over a stand-in older release, then roll back. Prints the time of each step.
# Needs the package registries (it builds the bundle); run it on a build machine:
#   sh scripts/check_bundle.sh [--no-debs]
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
step() { printf '%-40s %s s\n' "$1" "$(( $(date +%s) - START ))"; }

START=$(date +%s)
"$ROOT/.venv/bin/hallhub" bundle "$WORK/bundle" "$@"
step "bundle built"
ls "$WORK/bundle/wheels" | wc -l | xargs printf '  wheels: %s\n'
ls "$WORK/bundle/debs" 2>/dev/null | wc -l | xargs printf '  debs:   %s\n'

PREFIX="$WORK/opt"
mkdir -p "$PREFIX/releases/0.0.1/bin"
printf '#!/bin/sh\necho "hallhub 0.0.1"\n' > "$PREFIX/releases/0.0.1/bin/hallhub"
chmod +x "$PREFIX/releases/0.0.1/bin/hallhub"
ln -s "$PREFIX/releases/0.0.1" "$PREFIX/current"

START=$(date +%s)
PREFIX="$PREFIX" SKIP_DEBS=1 sh "$WORK/bundle/install.sh"
step "offline install (pip --no-index)"
"$PREFIX/current/bin/hallhub" --help > /dev/null
test "$(readlink "$PREFIX/previous")" = "$PREFIX/releases/0.0.1"

PREFIX="$PREFIX" sh "$WORK/bundle/install.sh" --rollback
test "$("$PREFIX/current/bin/hallhub")" = "hallhub 0.0.1"
echo "upgrade kept 0.0.1 and rollback made it current again: ok"
