#!/usr/bin/env bash
# Usage: bench/ensure-tool.sh COMMAND DEBIAN_PACKAGE
# Makes sure a load generator `npm run bench` drives the systems with (wrk
# from wrk; h2load from nghttp2-client) is on the PATH. Installs Debian's
# package when running as root with apt-get, as scripts/ensure-etcd.sh does
# for etcd; otherwise stops with the exact command to run.
set -euo pipefail
cmd="$1"
pkg="$2"
if command -v "$cmd" >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "$cmd not found: installing Debian's $pkg" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "$pkg" >&2
  command -v "$cmd" >/dev/null 2>&1 || { echo "$cmd is still missing after apt-get install" >&2; exit 1; }
  exit 0
fi
echo "$cmd not installed. Install with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y $pkg" >&2
exit 1
