#!/bin/sh
# build.sh makes the root file system of a paddock template in $ROOT. It
# runs as the first process of a private PID and mount namespace
# (images/debootstrap: Build), so every mount it makes disappears, and
# every process it starts is killed, when it ends, however it ends.
#
# It gets, in its environment:
#   ROOT      the directory to fill (empty or missing)
#   SUITE     the Debian suite (bookworm)
#   MIRROR    the Debian mirror's URL; SECURITY the security mirror's, or
#             empty
#   ARCHIVES  the package cache, shared by debootstrap and apt (the
#             caller holds its lock)
#   OVERLAY   a directory of files to copy over the root file system
#   PACKAGES  the packages to install, space-separated; KERNEL the
#             kernel's meta-package
#   MODULES   kernel modules for the initramfs, space-separated
#   ROOT_UUID the root file system's UUID, for /etc/fstab
#   APT_CONF  apt settings for the build only (reaching the mirror)
#   TEMPLATE_HOSTNAME  the default host name
# and prints "@@step NAME" as each step begins.
set -eu

step() { echo "@@step $1"; }

export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
in_root() { chroot "$ROOT" "$@"; }
apt_get() { in_root apt-get -q -y -o Dpkg::Use-Pty=0 "$@"; }

step debootstrap
debootstrap --variant=minbase --components=main --cache-dir="$ARCHIVES" \
	"$SUITE" "$ROOT" "$MIRROR"

# The namespace's mounts: the kernel's file systems for package scripts,
# and the shared package cache in place of the root's own.
mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --rbind /dev "$ROOT/dev"
find "$ROOT/var/cache/apt/archives" -name '*.deb' -delete
mount --bind "$ARCHIVES" "$ROOT/var/cache/apt/archives"

# No service starts in the chroot (invoke-rc.d asks policy-rc.d).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
printf '%s\n' "$APT_CONF" >"$ROOT/etc/apt/apt.conf.d/99paddock-build"

step sources
rm -f "$ROOT/etc/apt/sources.list"
{
	printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$MIRROR" "$SUITE" "$SUITE"
	if [ -n "$SECURITY" ]; then
		printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$SECURITY" "$SUITE"
	fi
} >"$ROOT/etc/apt/sources.list.d/debian.sources"
apt_get update
apt_get upgrade

# initramfs-tools first, so that the kernel's initramfs is made once,
# with the virtio drivers the root disk needs (Debian builds them as
# modules).
step initramfs-tools
apt_get install --no-install-recommends initramfs-tools zstd
printf '%s\n' "# Added by paddock template build: the root disk is virtio-blk." $MODULES \
	>>"$ROOT/etc/initramfs-tools/modules"
printf '%s\n' "# Written by paddock template build: only the modules listed in" \
	"# /etc/initramfs-tools/modules (the root disk's drivers); udev loads" \
	"# the rest from the root file system." "MODULES=list" \
	>"$ROOT/etc/initramfs-tools/conf.d/paddock.conf"
cp -R "$OVERLAY/." "$ROOT/"

step packages
# shellcheck disable=SC2086 # word splitting wanted
apt_get install --no-install-recommends "$KERNEL" $PACKAGES

step configure
printf '%s\n' "$TEMPLATE_HOSTNAME" >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
	"$TEMPLATE_HOSTNAME" >"$ROOT/etc/hosts"
printf '%s\n' "# Written by paddock template build. The root file system grows to" \
	"# fill its disk at boot (x-systemd.growfs): a VM's root_size." \
	"UUID=$ROOT_UUID / ext4 errors=remount-ro,x-systemd.growfs 0 1" >"$ROOT/etc/fstab"
in_root systemctl enable systemd-networkd.service systemd-resolved.service paddock-ssh-hostkeys.service paddock-identity.service

# What makes one VM different from another is made on its first boot:
# machine ID (an empty file means "first boot" to systemd), SSH host
# keys, the random seed.
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT/var/lib/systemd/random-seed" \
	"$ROOT"/etc/ssh/ssh_host_*_key "$ROOT"/etc/ssh/ssh_host_*_key.pub

# Build-only files, package lists and logs.
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT/etc/apt/apt.conf.d/99paddock-build" \
	"$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/debconf/*-old \
	"$ROOT"/var/lib/dpkg/*-old
find "$ROOT/var/lib/apt/lists" -type f -delete
find "$ROOT/var/log" -type f -exec truncate -s 0 {} +
step done
