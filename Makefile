# Shortcuts; each target is one command you can also type yourself.
.PHONY: bench bench-quick faults soak mutation

bench:
	.venv/bin/hallhub bench

bench-quick:
	.venv/bin/hallhub bench --quick

faults:
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/faults

soak:
	HALLHUB_SOAK=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/faults

mutation:
	bash scripts/mutation.sh
