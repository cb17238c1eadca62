#!/usr/bin/env bash
# Makes sure h2load (nghttp2's HTTP/2 load generator, which the 'grpc'
# section of `npm run bench` drives the systems with) is on the PATH.
# Installs Debian's nghttp2-client when running as root with apt-get, as
# bench/ensure-wrk.sh does for wrk; otherwise stops with the exact command.
set -euo pipefail
if command -v h2load >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "h2load not found: installing Debian's nghttp2-client" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq nghttp2-client >&2
  command -v h2load >/dev/null 2>&1 || { echo "h2load is still missing after apt-get install" >&2; exit 1; }
  exit 0
fi
echo "h2load not installed. Install with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y nghttp2-client" >&2
exit 1
