#!/usr/bin/env bash
# Installs the system services the tests talk to for real: Prometheus (with promtool) and
# Alertmanager, from Debian's packages. Idempotent; skips what is already present.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "install-system-deps: need ${need[*]} (Debian packages); run as root or install them, then retry" >&2
  exit 1
fi
echo "install-system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# --no-install-recommends: the daemons are started by the tests themselves, not by systemd.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
