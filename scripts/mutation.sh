#!/usr/bin/env bash
# Mutation testing (mutmut) of the value decoders, dedupe and sequencing code.
# Configuration: [tool.mutmut] in pyproject.toml. Work happens in ./mutants/.
# Prints mutmut's per-mutant results, then the score: killed / (all - skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
children="${MUTMUT_CHILDREN:-2}"
.venv/bin/mutmut run --max-children "$children" || true
.venv/bin/mutmut results --all true > mutants/results.txt 2>&1 || true
.venv/bin/python - <<'PY'
import collections, re
counts = collections.Counter()
for line in open("mutants/results.txt", encoding="utf-8"):
    match = re.match(r"\s*(\S+): (.+)$", line)
    if match:
        counts[match.group(2).strip()] += 1
total = sum(counts.values()) - counts["skipped"]
killed = counts["killed"] + counts["timeout"]
print(dict(counts))
if total:
    print(f"mutation score: {killed}/{total} = {100 * killed / total:.1f}%")
PY
