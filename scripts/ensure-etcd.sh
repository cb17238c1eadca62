#!/usr/bin/env bash
# Makes sure etcd 3.x and etcdctl are on the PATH (the demo and the tests run
# a real etcd member). Installs Debian's packages when running as root with
# apt-get; otherwise stops with the exact command to run.
set -euo pipefail
if command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "etcd not found: installing Debian's etcd-server and etcd-client" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq etcd-server etcd-client >&2
  command -v etcd >/dev/null 2>&1 || { echo "etcd is still missing after apt-get install" >&2; exit 1; }
  exit 0
fi
echo "etcd is not installed. Install it with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y etcd-server etcd-client" >&2
exit 1
