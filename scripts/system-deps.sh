#!/usr/bin/env bash
# Debian packages CityLake's tests and production profile use; installs only what is missing.
#   chromium + fonts-noto-cjk  the browser tests (without the fonts Chinese renders as boxes)
#   postgresql                 the production profile's metadata server
set -euo pipefail
packages=(chromium fonts-noto-cjk postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[system-deps] installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) == 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "[system-deps] ${packages[*]} present"
fi
