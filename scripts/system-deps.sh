#!/usr/bin/env bash
# Debian packages CityLake's tests and production profile use; installs only what is missing.
#   chromium + fonts-noto-cjk  the browser tests (without the fonts Chinese renders as boxes)
#   postgresql                 the production profile's metadata server
# As root (or with passwordless sudo) it installs them; otherwise it says, in one line, which
# command to run, and fails, so `make test` never starts a test that would error for want of one.
set -euo pipefail
packages=(chromium fonts-noto-cjk postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "[system-deps] ${packages[*]} present"
  exit 0
fi
if [[ $(id -u) == 0 ]]; then
  sudo_cmd=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo_cmd=(sudo -n)
else
  echo "[system-deps] the tests need the Debian packages ${missing[*]}: run \`sudo $0\` (or \`sudo apt-get install ${missing[*]}\`), then make test again" >&2
  exit 1
fi
log=${TMPDIR:-/tmp}/citylake-system-deps.log
echo "[system-deps] installing ${missing[*]} (a minute or two; apt's output in $log)"
if ! { "${sudo_cmd[@]}" apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"; } >"$log" 2>&1; then
  tail -20 "$log" >&2
  echo "[system-deps] apt-get could not install ${missing[*]}; the whole output is in $log" >&2
  exit 1
fi
echo "[system-deps] installed ${missing[*]}"
