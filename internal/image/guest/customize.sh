#!/bin/sh
# Runs on the build host as an mmdebstrap customize hook once every package
# is installed and banger's guest files are in place.
#   $1  the image tree
#   $2  file that receives the list of files in the initrd
set -eu
root=$1
initrd_list=$2

# banger's units on; anything that would fight banger-net, or run apt in
# the background of a short-lived VM, off.
chroot "$root" systemctl enable banger-net.service banger-hostkeys.service banger-growroot.service banger-agent.service
for unit in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
	NetworkManager.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
	fstrim.timer; do
	if [ -e "$root/lib/systemd/system/$unit" ] || [ -e "$root/etc/systemd/system/$unit" ]; then
		chroot "$root" systemctl disable "$unit"
		chroot "$root" systemctl mask "$unit"
	fi
done

# Every VM makes its own host keys and machine id.
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
if [ -f "$root/var/lib/dbus/machine-id" ] && [ ! -L "$root/var/lib/dbus/machine-id" ]; then
	rm -f "$root/var/lib/dbus/machine-id"
fi
rm -f "$root/etc/hostname" "$root/etc/resolv.conf"

# Nothing cached or logged by the build.
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
	"$root"/var/cache/debconf/*-old \
	"$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/var/log/alternatives.log "$root"/tmp/*

# The initrd must carry the virtio-mmio stack (checked by the builder).
initrd=$(ls "$root"/boot/initrd.img-* | head -n 1)
chroot "$root" lsinitramfs "/boot/${initrd##*/}" >"$initrd_list"
