#!/usr/bin/env bash
# Build the small Debian bookworm cloud image that holos's end-to-end tests boot.
#
#   scripts/build-test-image.sh               build (if not cached) and print the image path
#   scripts/build-test-image.sh --print-path  print the path only, build nothing
#
# Debian packages only: debootstrap --variant=minbase, the generic kernel (the cloud flavour has
# no 9p, which bind mounts need) without drivers a VM never loads, cloud-init (NoCloud
# datasource only, networkd renderer), openssh-server, sudo; GRUB for BIOS boot on an MBR disk;
# trimmed for boot speed under TCG. The result is a compressed qcow2, cached at a path keyed by
# the hash of this file, with the guest kernel next to it (<stem>.vmlinuz) for the harness's
# acceleration probe. The image path is the last line of stdout; everything else goes to stderr.
# Needs root (debootstrap, loop devices); re-runs itself through `sudo -n` when it can.
# The Debian mirror is read from the host's apt configuration (or $HOLOS_DEBIAN_MIRROR).
set -euo pipefail

script_path=$(readlink -f "${BASH_SOURCE[0]}")
script_hash=$(sha256sum "$script_path" | cut -c1-12)
cache_dir=${HOLOS_TEST_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/holos/test-images}
stem="$cache_dir/debian-bookworm-$script_hash"
image="$stem.qcow2"
kernel="$stem.vmlinuz"

case "${1:-}" in
  --print-path) echo "$image"; exit 0 ;;
  '') ;;
  -h|--help) sed -n '2,13p' "$script_path" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "build-test-image: unknown argument: $1" >&2; exit 2 ;;
esac

if [[ -f "$image" && -f "$kernel" ]]; then echo "$image"; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then
  mkdir -p "$cache_dir" # owned by the caller, not root
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n env HOLOS_TEST_IMAGE_CACHE="$cache_dir" HOLOS_OWNER="$(id -u):$(id -g)" \
      ${HOLOS_DEBIAN_MIRROR:+HOLOS_DEBIAN_MIRROR="$HOLOS_DEBIAN_MIRROR"} bash "$script_path"
  fi
  echo "build-test-image: must run as root (debootstrap, loop devices); try: sudo $0" >&2
  exit 1
fi

# From here on stdout is stderr; the final path goes to the saved stdout (fd 3).
exec 3>&1 1>&2
log() { printf '[build-test-image %3ds] %s\n' "$SECONDS" "$*" >&2; }

# --- tools --------------------------------------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v sfdisk >/dev/null || need+=(fdisk)
command -v partx >/dev/null || need+=(util-linux)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] || need+=(debian-archive-keyring)
command -v gpgv >/dev/null || need+=(gpgv)
if ((${#need[@]})); then
  log "installing host tools: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" \
    || { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
fi

# --- mirror: read from the host's apt configuration -------------------------------------------
# Prints "main-URI security-URI" (security may be "-"). deb822 .sources first, then one-line lists.
read_mirrors() {
  local files=()
  shopt -s nullglob
  files=(/etc/apt/sources.list.d/*.sources)
  local lists=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  shopt -u nullglob
  {
    if ((${#files[@]})); then
      awk '
        function flush() {
          if (types ~ /(^| )deb( |$)/ && uris != "") {
            n = split(uris, u, " "); m = split(suites, s, " ")
            for (i = 1; i <= m; i++) print s[i], u[1]
          }
          types = uris = suites = ""
        }
        /^[ \t]*#/ { next }
        /^[ \t]*$/ { flush(); next }
        tolower($1) == "types:"  { $1 = ""; types = $0 " " }
        tolower($1) == "uris:"   { $1 = ""; sub(/^ +/, ""); uris = $0 }
        tolower($1) == "suites:" { $1 = ""; sub(/^ +/, ""); suites = $0 }
        END { flush() }
      ' "${files[@]}"
    fi
    for f in "${lists[@]}"; do
      [[ -r "$f" ]] || continue
      # deb [options] URI suite components...
      sed -E -n 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+)[[:space:]]+([^[:space:]]+).*/\3 \2/p' "$f"
    done
  } | awk '
    $1 ~ /-security$/ { if (sec == "") sec = $2; next }
    $1 ~ /-(updates|backports|proposed-updates)$/ { next }
    { if (main == "") main = $2 }
    END { if (main == "") exit 1; print main, (sec == "" ? "-" : sec) }
  '
}
if [[ -n "${HOLOS_DEBIAN_MIRROR:-}" ]]; then
  mirror=$HOLOS_DEBIAN_MIRROR security=-
else
  read -r mirror security < <(read_mirrors) || true
fi
if [[ -z "${mirror:-}" ]]; then
  log "no Debian mirror found in /etc/apt/sources.list{,.d}; set HOLOS_DEBIAN_MIRROR"
  exit 1
fi
mirror=${mirror%/}
log "mirror: $mirror (security: $security)"

# --- work area, cleaned up on any exit --------------------------------------------------------
mkdir -p "$cache_dir"
exec 9>"$cache_dir/.build-$script_hash.lock"
if ! flock -n 9; then
  log "another build of this image is running; waiting for it"
  flock 9
fi
if [[ -f "$image" && -f "$kernel" ]]; then echo "$image" >&3; exit 0; fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/holos-test-image.XXXXXX")
mnt="$work/mnt"
disk="$work/disk.raw"
loop=
cleanup() {
  local rc=$?
  set +e
  if mountpoint -q "$mnt" 2>/dev/null; then
    umount -R "$mnt" 2>/dev/null || { sleep 1; umount -R -l "$mnt"; }
  fi
  if [[ -n "$loop" ]]; then
    partx -d "$loop" 2>/dev/null
    losetup -d "$loop"
  fi
  rm -rf "$work"
  rm -f "$stem.qcow2.tmp" "$stem.vmlinuz.tmp"
  ((rc == 0)) || log "FAILED (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- disk: 2 GiB raw, one bootable MBR partition from 1 MiB -----------------------------------
log "creating disk"
truncate -s 2G "$disk"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$disk"
loop=$(losetup -f --show -P "$disk")
part="${loop}p1"
for _ in 1 2 3 4 5; do [[ -b "$part" ]] && break; partx -a "$loop" 2>/dev/null || partx -u "$loop" 2>/dev/null || true; sleep 0.2; done
if [[ ! -b "$part" && -r "/sys/block/${loop#/dev/}/${part#/dev/}/dev" ]]; then
  IFS=: read -r maj min <"/sys/block/${loop#/dev/}/${part#/dev/}/dev"
  mknod "$part" b "$maj" "$min"
fi
[[ -b "$part" ]] || { log "partition device $part did not appear"; exit 1; }

# No orphan_file / metadata_csum_seed (GRUB 2.06 cannot read them); inode tables written now so
# the guest does not spend TCG time in ext4lazyinit.
# shellcheck disable=SC2054 # the commas are mke2fs syntax
mkfs_opts=(-q -L holos-root -E lazy_itable_init=0,lazy_journal_init=0)
mkfs.ext4 "${mkfs_opts[@]}" -O ^orphan_file,^metadata_csum_seed "$part" 2>/dev/null \
  || mkfs.ext4 "${mkfs_opts[@]}" "$part"
uuid=$(blkid -s UUID -o value "$part")
mkdir -p "$mnt"
mount -o noatime "$part" "$mnt"

# --- base system -------------------------------------------------------------------------------
log "debootstrap --variant=minbase bookworm"
# Docs, man pages and translations stay off the disk for every later dpkg run (in the image too);
# what debootstrap unpacked before this applies is deleted in the clean-up below.
mkdir -p "$mnt/etc/dpkg/dpkg.cfg.d"
cat >"$mnt/etc/dpkg/dpkg.cfg.d/01-holos-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/lintian/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
debootstrap --variant=minbase --components=main bookworm "$mnt" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 40 "$work/debootstrap.log"; log "debootstrap failed"; exit 1; }

mount -t proc proc "$mnt/proc"
mount -t sysfs sysfs "$mnt/sys"
mount --bind /dev "$mnt/dev"
mount -t devpts devpts "$mnt/dev/pts" -o gid=5,mode=620,newinstance,ptmxmode=0666 2>/dev/null || true
cp -L /etc/resolv.conf "$mnt/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$mnt/usr/sbin/policy-rc.d"
chmod 755 "$mnt/usr/sbin/policy-rc.d"

{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  [[ "$security" == - ]] || echo "deb ${security%/} bookworm-security main"
} >"$mnt/etc/apt/sources.list"
cat >"$mnt/etc/apt/apt.conf.d/90-holos" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF

# Initramfs: only what a virtio (or SCSI) ext4 root needs, zstd-compressed. MODULES=dep would
# look at the build host's root device, hence an explicit list.
mkdir -p "$mnt/etc/initramfs-tools/conf.d"
cat >"$mnt/etc/initramfs-tools/conf.d/holos.conf" <<'EOF'
MODULES=list
COMPRESS=zstd
EOF
cat >"$mnt/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_scsi
sd_mod
ext4
crc32c_generic
EOF

in_root() { chroot "$mnt" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

log "installing kernel, systemd, cloud-init, openssh-server"
in_root apt-get update -q >"$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log"; exit 1; }
packages=(
  linux-image-amd64 initramfs-tools zstd grub-pc-bin grub2-common
  systemd systemd-sysv udev systemd-resolved
  cloud-init cloud-guest-utils fdisk
  openssh-server sudo iproute2 e2fsprogs netbase
  iperf3 iputils-ping
)
in_root apt-get install -y -q -o Dpkg::Options::=--force-unsafe-io "${packages[@]}" >>"$work/apt.log" 2>&1 \
  || { tail -n 40 "$work/apt.log"; log "apt-get install failed"; exit 1; }

# Drivers for hardware a VM does not have: 300 MB of modules the image need not carry.
for dir in sound drivers/gpu drivers/media drivers/net/wireless drivers/infiniband drivers/staging \
  drivers/bluetooth net/bluetooth net/wireless net/mac80211 drivers/iio drivers/isdn drivers/net/can \
  drivers/input/touchscreen drivers/hwmon drivers/mtd drivers/comedi; do
  rm -rf "$mnt"/lib/modules/*/kernel/"$dir"
done
for version in "$mnt"/lib/modules/*; do in_root depmod -a "${version##*/}"; done

# --- configuration -----------------------------------------------------------------------------
log "configuring"
echo debian >"$mnt/etc/hostname"
cat >"$mnt/etc/hosts" <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
# Disposable test VMs: no fsck at boot.
echo "UUID=$uuid / ext4 rw,noatime,errors=remount-ro 0 0" >"$mnt/etc/fstab"
# Empty machine-id: each VM gets its own at boot.
: >"$mnt/etc/machine-id"
rm -f "$mnt/var/lib/dbus/machine-id"
# Host keys come from cloud-init (ssh_keys or ssh_genkeytypes) on first boot.
rm -f "$mnt"/etc/ssh/ssh_host_*
# No root password: the account stays locked ('*'), access is by the cloud-init user's SSH key.
sed -i 's/^root:[^:]*:/root:*:/' "$mnt/etc/shadow"

# cloud-init: NoCloud only, systemd-networkd renderer, the modules a cloud image really runs.
cat >"$mnt/etc/cloud/cloud.cfg" <<'EOF'
# holos test image: trimmed from Debian's cloud.cfg.
datasource_list: [ NoCloud, None ]
users:
  - default
disable_root: true
preserve_hostname: false
ssh_deletekeys: true
ssh_genkeytypes: [ ed25519, ecdsa ]
manage_etc_hosts: true

cloud_init_modules:
  - seed_random
  - bootcmd
  - write-files
  - growpart
  - resizefs
  - disk_setup
  - mounts
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - ca-certs
  - users-groups
  - ssh

cloud_config_modules:
  - ssh-import-id
  - set-passwords
  - timezone
  - runcmd

cloud_final_modules:
  - package-update-upgrade-install
  - write-files-deferred
  - scripts-vendor
  - scripts-per-once
  - scripts-per-boot
  - scripts-per-instance
  - scripts-user
  - ssh-authkey-fingerprints
  - final-message

system_info:
  distro: debian
  default_user:
    name: debian
    lock_passwd: true
    gecos: Debian
    groups: [adm, sudo]
    sudo: ["ALL=(ALL) NOPASSWD:ALL"]
    shell: /bin/bash
  network:
    renderers: [ networkd ]
    activators: [ networkd ]
  paths:
    cloud_dir: /var/lib/cloud/
    templates_dir: /etc/cloud/templates/
  package_mirrors: []
  ssh_svcname: ssh
EOF
rm -f "$mnt"/etc/cloud/cloud.cfg.d/*.cfg.dpkg-* "$mnt/etc/cloud/cloud.cfg.d/01_debian_cloud.cfg"

systemctl -q --root="$mnt" enable systemd-networkd.service systemd-resolved.service ssh.service
ln -sf ../run/systemd/resolve/stub-resolv.conf "$mnt/etc/resolv.conf.holos"
# wait-online: one configured link is enough (a second NIC may be on a socket backend).
mkdir -p "$mnt/etc/systemd/system/systemd-networkd-wait-online.service.d"
cat >"$mnt/etc/systemd/system/systemd-networkd-wait-online.service.d/holos.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=30
EOF
# Units a test VM does not need (each costs seconds of emulated CPU under TCG). Not logind:
# it turns the ACPI power button (QMP system_powerdown) into a shutdown.
systemctl -q --root="$mnt" mask \
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer man-db.timer logrotate.timer getty@tty1.service \
  systemd-timesyncd.service cloud-init-hotplugd.socket \
  modprobe@drm.service modprobe@efi_pstore.service modprobe@dm_mod.service \
  modprobe@loop.service modprobe@fuse.service modprobe@configfs.service \
  sys-fs-fuse-connections.mount sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount dev-hugepages.mount systemd-binfmt.service \
  proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
# Kernel modules udev would load for (emulated) CPU features a test VM does not use.
cat >"$mnt/etc/modprobe.d/holos-test-image.conf" <<'EOF'
blacklist kvm
blacklist kvm_amd
blacklist kvm_intel
blacklist aesni_intel
blacklist ghash_clmulni_intel
blacklist sha1_ssse3
blacklist sha256_ssse3
blacklist sha512_ssse3
blacklist crct10dif_pclmul
blacklist crc32_pclmul
blacklist serio_raw
blacklist pcspkr
blacklist powernow_k8
EOF
# Key-only SSH (set here rather than by cloud-init's ssh_pwauth, which restarts sshd).
mkdir -p "$mnt/etc/ssh/sshd_config.d"
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\n' >"$mnt/etc/ssh/sshd_config.d/50-holos.conf"

# --- boot loader -------------------------------------------------------------------------------
log "installing GRUB (BIOS)"
# From inside the root: grub-install finds a partition's start through `udevadm` (the guest's
# udev provides it); the loop driver has no HDIO_GETGEO to fall back on.
mkdir -p "$mnt/boot/grub"
echo "(hd0) $loop" >"$mnt/boot/grub/device.map"
in_root grub-install --target=i386-pc --modules="part_msdos ext2" --no-floppy "$loop" >"$work/grub.log" 2>&1 \
  || { cat "$work/grub.log"; exit 1; }
rm -f "$mnt/boot/grub/device.map"
cat >"$mnt/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
set default=0
search --no-floppy --fs-uuid --set=root $uuid
menuentry 'Debian (holos test image)' {
  linux /vmlinuz root=UUID=$uuid ro console=ttyS0,115200 mitigations=off
  initrd /initrd.img
}
EOF

# --- clean up the root ---------------------------------------------------------------------
log "cleaning"
in_root apt-get clean
rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin "$mnt"/var/cache/debconf/*-old \
  "$mnt"/var/lib/dpkg/*-old "$mnt"/var/log/*.log "$mnt"/var/log/apt/* "$mnt/var/lib/cloud" \
  "$mnt/usr/sbin/policy-rc.d" "$mnt"/tmp/* "$mnt"/var/tmp/* "$mnt/root/.bash_history"
find "$mnt/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
rm -rf "$mnt"/usr/share/man/* "$mnt"/usr/share/info/*
find "$mnt/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
# udev's hardware database (13 MB): only model names and keyboard quirks, nothing a test VM uses.
rm -f "$mnt/usr/lib/udev/hwdb.bin" "$mnt/etc/udev/hwdb.bin"
rm -f "$mnt/etc/resolv.conf"
mv "$mnt/etc/resolv.conf.holos" "$mnt/etc/resolv.conf"

cp -L "$mnt/vmlinuz" "$stem.vmlinuz.tmp"
du -sh --exclude=proc --exclude=sys --exclude=dev "$mnt" | sed 's/^/root file system: /' >&2
umount "$mnt/dev/pts" 2>/dev/null || true
umount "$mnt/dev" "$mnt/sys" "$mnt/proc"
# Blocks freed by the clean-up go back to the allocator (and become trimmable) only at the
# next journal commit.
sync -f "$mnt/etc"
fstrim -v "$mnt" || log "fstrim failed: the image will be larger"
umount "$mnt"
partx -d "$loop" 2>/dev/null || true
losetup -d "$loop"
loop=

log "converting to compressed qcow2"
qemu-img convert -c -O qcow2 "$disk" "$stem.qcow2.tmp"
chmod 644 "$stem.qcow2.tmp" "$stem.vmlinuz.tmp"
if [[ -n "${HOLOS_OWNER:-}" ]]; then
  chown "$HOLOS_OWNER" "$stem.qcow2.tmp" "$stem.vmlinuz.tmp" "$cache_dir" 2>/dev/null || true
fi
mv "$stem.vmlinuz.tmp" "$kernel"
mv "$stem.qcow2.tmp" "$image"
# Safe to remove now: a waiting build finds the image once it holds the lock and stops there.
rm -f "$cache_dir/.build-$script_hash.lock"
log "done: $(du -h "$image" | cut -f1) $image"
echo "$image" >&3
