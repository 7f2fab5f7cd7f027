#!/bin/sh
# /init of the live-KVM initramfs (busybox sh). Built into the initramfs by run.sh.
#
# Mounts the pseudo filesystems, checks /dev/kvm, prints KVM_CAP_XEN_HVM, runs the
# inner command in /xconf, then reports back on the serial console between
# marker lines "@@xconf-live:<nonce>:<what>" (the nonce is fresh per run):
#   probe <probe output>      exit <code>       taint <kernel taint mask>
#   junit-begin <bytes>, base64 of the gzipped JUnit file, junit-end <sha256>
#   junit-missing             fatal <reason>    done
#   diff-begin/diff-end: the same for the differential report (JUNIT with .differential.xml)
#   wall <seconds the inner command took>
#   gcda-begin/gcda-end, gcda-missing: the same for xen.gcda when XCONF_COVERAGE=1
#   qemu-exit, qemu-wall, qemu-junit-begin/-end (or qemu-junit-missing),
#     qemu-diff-begin/-end: the same for /xconf-live/cmd-qemu.sh (the qemu target), run
#     after all of the above
# and powers off. Kernel command line switches (for debugging):
#   xconf.cmd=<base64>   run this shell command instead of /xconf-live/cmd.sh
#   xconf.shell=1        start an interactive shell on the console before power-off
#   xconf.coverage=1     reset xen.o's gcov counters before the command, send xen.gcda after
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
	xconf.coverage=1) XCONF_COVERAGE=1 ;;
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
rm -f "$junit" "${junit%.xml}.differential.xml"

# Coverage variant: xen.o's gcov counters, zeroed so they count the inner command only.
gcda=
if [ "${XCONF_COVERAGE:-0}" = 1 ]; then
	mkdir -p /sys/kernel/debug
	mount -t debugfs debugfs /sys/kernel/debug || fatal "cannot mount debugfs for the coverage counters"
	gcda=$(find /sys/kernel/debug/gcov -name xen.gcda | head -n1)
	[ -n "$gcda" ] || fatal "coverage kernel without /sys/kernel/debug/gcov/.../xen.gcda"
	echo 1 >/sys/kernel/debug/gcov/reset || fatal "cannot reset the gcov counters"
fi

# send <payload name> <file>: the file, gzipped and base64, between its begin and end
# markers (begin: its size, end: its sha256).
send() {
	mark "$1-begin $(wc -c <"$2")"
	gzip -c "$2" | base64
	mark "$1-end $(sha256sum "$2" | cut -d' ' -f1)"
}

# run <command file> <junit> <prefix>: runs the command in /xconf with XCONF_LIVE_JUNIT
# set, then reports <prefix>exit, <prefix>wall and sends the JUnit file (<prefix>junit,
# or <prefix>junit-missing) and its differential (<prefix>diff) when there is one.
run() {
	rm -f "$2" "${2%.xml}.differential.xml"
	dmesg -n 7
	echo "xconf-live: running $(cat "$1")"
	t0=$(cut -d' ' -f1 /proc/uptime)
	(cd /xconf && XCONF_LIVE_JUNIT="$2" exec sh "$1" </dev/null)
	rc=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	mark "${3}exit $rc"
	mark "${3}wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
	# Keep kernel messages from splitting the base64 lines.
	dmesg -n 1
	if [ -f "$2" ]; then send "${3}junit" "$2"; else mark "${3}junit-missing"; fi
	# The differential of the run against its reference (--diff-report), when there is one.
	if [ -f "${2%.xml}.differential.xml" ]; then send "${3}diff" "${2%.xml}.differential.xml"; fi
}

run "$cmd_file" "$junit" ''
if [ -n "$gcda" ]; then
	cp "$gcda" /tmp/xen.gcda
	send gcda /tmp/xen.gcda
fi

# The qemu target (XCONF_LIVE_QEMU=1): a second command, after the first one's results
# and coverage are out, so xen.c's figures stay the kvm target's own. Its markers are
# qemu-exit, qemu-wall, qemu-junit (or qemu-junit-missing) and qemu-diff.
if [ -f /xconf-live/cmd-qemu.sh ]; then run /xconf-live/cmd-qemu.sh "${XCONF_LIVE_QEMU_JUNIT:-/tmp/qemu.xml}" qemu-; fi
finish
