#!/usr/bin/env bash
# Make a real Prometheus and Alertmanager (Debian's packages, with promtool) available to the test suite.
# Installs the package when `prometheus` is not on PATH; never starts the systemd service: the
# test starts `prometheus` itself as a plain process on loopback with a temporary config and data
# dir. Needs root and apt when the package is missing.
#   usage: .ci/prometheus.sh
set -euo pipefail

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101 = "action forbidden": the package's postinst must not start the service.
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [[ -e $policy ]] && had_policy=1
  if [[ $had_policy == 0 ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >&2
  # Had systemd been running, the units may still have been enabled/started: stop them, keep them off.
  for unit in prometheus prometheus-alertmanager; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$unit" 2>/dev/null; then
      systemctl stop "$unit" >&2 || true
      systemctl disable "$unit" >&2 || true
    fi
  done
fi
prometheus --version 2>&1 | head -1 >&2
promtool --version 2>&1 | head -1 >&2
prometheus-alertmanager --version 2>&1 | head -1 >&2
