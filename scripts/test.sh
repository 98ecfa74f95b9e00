#!/usr/bin/env bash
# The whole check: install what is missing, lint, type-check, build the docs, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m mypy
# the docs site, strict: a broken link or anchor, or a reference that fails, ends the run;
# tests/test_docs.py reads its objects.inv (every public name in the API reference)
site_dir="$(mktemp -d)"
trap 'rm -rf "$site_dir"' EXIT
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --site-dir "$site_dir"
SYNCSTREAM_DOCS_SITE="$site_dir" python3 -m pytest "$@"
