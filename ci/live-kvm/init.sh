#!/bin/sh
# /init of the live-KVM initramfs (busybox sh). Built into the initramfs by run.sh.
#
# Mounts the pseudo filesystems, checks /dev/kvm, prints KVM_CAP_XEN_HVM, runs the
# inner command in /xconf, then reports back on the serial console between
# marker lines "@@xconf-live:<nonce>:<what>" (the nonce is fresh per run):
#   probe <probe output>      exit <code>       taint <kernel taint mask>
#   junit-begin <bytes>, base64 of the gzipped JUnit file, junit-end <sha256>
#   junit-missing             fatal <reason>    done
# and powers off. Kernel command line switches (for debugging):
#   xconf.cmd=<base64>   run this shell command instead of /xconf-live/cmd.sh
#   xconf.shell=1        start an interactive shell on the console before power-off
# shellcheck disable=SC1091

export PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
# Without a /dev/console node in the archive the kernel starts us with no stdio.
if [ ! -t 1 ]; then exec 0<>/dev/console 1>&0 2>&0; fi
mkdir -p /proc /sys /tmp /dev/shm /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm

. /xconf-live/config
mark() { echo "@@xconf-live:${XCONF_NONCE}:$*"; }

finish() {
	mark "taint $(cat /proc/sys/kernel/tainted 2>/dev/null || echo unknown)"
	mark "uptime $(cut -d' ' -f1 /proc/uptime)"
	if [ -n "$want_shell" ]; then
		echo "xconf-live: interactive shell; leave it to power off"
		setsid cttyhack sh
	fi
	mark "done"
	/usr/libexec/xconf-kvm-probe drain 2>/dev/null || sleep 2
	poweroff -f
	echo o >/proc/sysrq-trigger
	# Still here: exiting init panics, and panic=-1 with -no-reboot ends QEMU.
	exit 1
}

fatal() {
	mark "fatal $*"
	finish
}

cmd_file=/xconf-live/cmd.sh
want_shell=
read -r cmdline </proc/cmdline
# shellcheck disable=SC2086 # split into words on purpose
for arg in $cmdline; do
	case "$arg" in
	xconf.cmd=*)
		echo "${arg#xconf.cmd=}" | base64 -d >/tmp/cmd.sh || fatal "xconf.cmd= is not valid base64"
		cmd_file=/tmp/cmd.sh
		;;
	xconf.shell=1) want_shell=1 ;;
	esac
done

mark "uptime $(cut -d' ' -f1 /proc/uptime)"
echo "xconf-live: kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs"

[ -c /dev/kvm ] || fatal "/dev/kvm is missing (KVM did not initialise; see the kernel log above)"
probe=$(/usr/libexec/xconf-kvm-probe) || fatal "probe failed: $probe"
mark "probe $probe"
mark "release $(uname -r)"

junit=${XCONF_LIVE_JUNIT:-/tmp/junit.xml}
XCONF_LIVE_KERNEL=$(uname -r)
export HOME=/tmp XCONF_LIVE=1 XCONF_LIVE_JUNIT="$junit" XCONF_LIVE_KERNEL
rm -f "$junit"
echo "xconf-live: running $(cat "$cmd_file")"
(cd /xconf && exec sh "$cmd_file" </dev/null)
rc=$?
mark "exit $rc"

# Keep kernel messages from splitting the base64 lines below.
dmesg -n 1
if [ -f "$junit" ]; then
	mark "junit-begin $(wc -c <"$junit")"
	gzip -c "$junit" | base64
	mark "junit-end $(sha256sum "$junit" | cut -d' ' -f1)"
else
	mark junit-missing
fi
finish
