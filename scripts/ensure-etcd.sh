#!/usr/bin/env bash
# Makes sure etcd 3.x and etcdctl are on the PATH (the demo and the tests run
# a real etcd member), and dnsmasq (the DNS SRV tests run their own dnsmasq on
# a loopback port). Installs Debian's packages when running as root with
# apt-get; otherwise stops with the exact command to run.
#
# dnsmasq comes from dnsmasq-base: the binary only, no system service (the
# "dnsmasq" package would start one on port 53).
set -euo pipefail
have_dnsmasq() { command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ]; }
missing=()
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  missing+=(etcd-server etcd-client)
fi
if ! have_dnsmasq; then
  missing+=(dnsmasq-base)
fi
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "not found: installing Debian's ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${missing[@]}" >&2
  command -v etcd >/dev/null 2>&1 || { echo "etcd is still missing after apt-get install" >&2; exit 1; }
  have_dnsmasq || { echo "dnsmasq is still missing after apt-get install" >&2; exit 1; }
  exit 0
fi
echo "${missing[*]} not installed. Install with:" >&2
echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
exit 1
