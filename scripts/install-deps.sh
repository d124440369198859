#!/usr/bin/env bash
# Installs the host packages holos and its tests need, on Debian or Ubuntu (run as root).
# Runtime: QEMU and qemu-img. Tests: the ISO and SSH tools they check holos against, and
# iproute2 for network namespaces, python3-yaml (PyYAML, the parser cloud-init reads seeds with)
# as the test oracle of the seed renderer, dnsmasq (dnsmasq-base) as the LAN's DHCP server of the
# bridge e2e, pci.ids for the names `holos devices` prints. The test image script installs its
# own build tools.
set -euo pipefail

packages=(qemu-system-x86 qemu-utils ovmf genisoimage xorriso openssh-client iproute2 tmux python3-yaml dnsmasq-base pci.ids)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all host packages present" >&2
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run this script as root (sudo $0)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
