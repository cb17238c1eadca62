#!/usr/bin/env bash
# Makes sure wrk (the HTTP load generator `npm run bench` drives the systems
# with) is on the PATH. Installs Debian's package when running as root with
# apt-get, as scripts/ensure-etcd.sh does for etcd; otherwise stops with the
# exact command to run.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "wrk not found: installing Debian's wrk" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq wrk >&2
  command -v wrk >/dev/null 2>&1 || { echo "wrk is still missing after apt-get install" >&2; exit 1; }
  exit 0
fi
echo "wrk not installed. Install with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y wrk" >&2
exit 1
