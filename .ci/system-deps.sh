#!/usr/bin/env bash
# System packages the tests use (idempotent): redis-server, for the Feast Redis online store tests, and chromium
# (with a font), for the headless render of the run report. Installs with apt-get only what is missing, each
# binary checked on its own. Never fails the build: when it cannot install a package, it says so in one line and
# exits 0, and the tests that need the binary skip with a reason.
set -u

# binary | Debian packages | what skips without it
DEPS=(
  "redis-server|redis-server|Redis store tests will skip"
  "chromium|chromium fonts-dejavu-core|the run report's headless-browser test will skip"
)

missing=()
for dep in "${DEPS[@]}"; do
  IFS='|' read -r bin _ _ <<<"$dep"
  command -v "$bin" >/dev/null 2>&1 || missing+=("$dep")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

not_installed() {  # one line per missing binary: why it was not installed and what skips
  for dep in "${missing[@]}"; do
    IFS='|' read -r bin pkgs why <<<"$dep"
    echo "system-deps: $1; $bin not installed ($why)"
  done
  exit 0
}

if ! command -v apt-get >/dev/null 2>&1; then
  not_installed "apt-get not found"
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    not_installed "not root and no passwordless sudo"
  fi
fi
log="$(mktemp "${TMPDIR:-/tmp}/system-deps.XXXXXX")"
if ! $SUDO apt-get update -qq >"$log" 2>&1; then
  not_installed "apt-get update failed (log: $log)"
fi
ok=1
for dep in "${missing[@]}"; do
  IFS='|' read -r bin pkgs why <<<"$dep"
  # shellcheck disable=SC2086  # $pkgs is a space-separated package list
  if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >>"$log" 2>&1 \
    && command -v "$bin" >/dev/null 2>&1; then
    continue
  fi
  echo "system-deps: apt-get could not install $pkgs (log: $log); $why"
  ok=0
done
if [ "$ok" -eq 1 ]; then
  rm -f "$log"
fi
exit 0
