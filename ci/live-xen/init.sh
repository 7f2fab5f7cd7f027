#!/bin/sh
# /init of the live-Xen dom0 initramfs (busybox sh). Built into the initramfs by run.sh.
#
# dom0 of a real Xen under QEMU/TCG: mounts the pseudo filesystems, loads the Xen
# device modules, starts the toolstack daemons (xenstored, xen-init-dom0,
# xenconsoled), runs the inner command in /xconf, then reports back on the serial
# console between marker lines "@@xconf-live:<nonce>:<what>" (fresh nonce per run):
#   ready <seconds since boot>   xen <xl info lines: xen_version, virt_caps, ...>
#   exit <code>   wall <seconds the inner command took>
#   junit-begin <bytes>, base64 of the gzipped JUnit file, junit-end <sha256>
#   diff-begin/diff-end: the same for the differential report
#   dmesg-begin/dmesg-end: the hypervisor's log (xl dmesg: (dN) guest lines, crashes)
#   fatal <reason>   done
# and powers off (Xen then ends QEMU through ACPI). Kernel command line switches:
#   xconf.shell=1   start an interactive shell on the console before power-off
export PATH=/usr/lib/xen/bin:/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin

mount -t devtmpfs devtmpfs /dev 2>/dev/null
if [ ! -t 1 ]; then exec 0<>/dev/console 1>&0 2>&0; fi
mkdir -p /proc /sys /tmp /dev/shm /dev/pts /run /var/lib/xenstored /var/lib/xen /var/log/xen/console /var/lock
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs tmpfs /run
mount -t devpts devpts /dev/pts
mkdir -p /run/xen /run/xenstored
ln -sfn /run /var/run # libxl's locks (domid-history.lock) live in /var/run/xen

. /xconf-live/config
mark() { echo "@@xconf-live:${XCONF_NONCE}:$*"; }

send() { # send <what> <file>: the file, gzip + base64, between markers
	mark "$1-begin $(wc -c <"$2")"
	gzip -c "$2" | base64
	mark "$1-end $(sha256sum "$2" | cut -d' ' -f1)"
}

finish() {
	dmesg -n 1
	if xl dmesg >/tmp/xen-dmesg.txt 2>/dev/null; then send dmesg /tmp/xen-dmesg.txt; fi
	if grep -q 'xconf.shell=1' /proc/cmdline; then
		echo "xconf-live: interactive shell; leave it to power off"
		setsid cttyhack sh
	fi
	mark "done"
	sync
	poweroff -f
	sleep 30
	exit 1
}

fatal() {
	mark "fatal $*"
	finish
}

for m in xen-privcmd xenfs xen-evtchn xen-gntdev xen-gntalloc; do
	[ -f "/lib/modules/$m.ko" ] && { insmod "/lib/modules/$m.ko" || fatal "insmod $m failed"; }
done
mount -t xenfs xenfs /proc/xen || fatal "cannot mount xenfs on /proc/xen: is this kernel running as Xen's dom0?"
[ -c /dev/xen/privcmd ] || fatal "/dev/xen/privcmd is missing (xen-privcmd did not load)"
export XENSTORED_ROOTDIR=/var/lib/xenstored
xenstored --pid-file /run/xenstore.pid || fatal "xenstored did not start"
xen-init-dom0 >/tmp/init-dom0.log 2>&1 || { cat /tmp/init-dom0.log; fatal "xen-init-dom0 failed"; }
xenconsoled --pid-file=/run/xenconsoled.pid || fatal "xenconsoled did not start"
xl info >/tmp/xl-info.txt 2>&1 || { cat /tmp/xl-info.txt; fatal "xl info failed: the toolstack cannot reach Xen"; }
mark "ready $(cut -d' ' -f1 /proc/uptime)"
mark "xen $(grep -E '^(xen_version|virt_caps|xen_commandline)' /tmp/xl-info.txt | tr -s ' ' | tr '\n' ';')"
mark "release $(uname -r)"

junit=${XCONF_LIVE_JUNIT:-/tmp/junit.xml}
# The xen target builds each case's domains with the ids the case names (ci/live-xen/xl-create.c).
export HOME=/tmp XCONF_LIVE=1 XCONF_LIVE_JUNIT="$junit" XCONF_XEN_CREATE=/usr/libexec/xconf-xl-create
rm -f "$junit" "${junit%.xml}.differential.xml"
echo "xconf-live: running $(cat /xconf-live/cmd.sh)"
t0=$(cut -d' ' -f1 /proc/uptime)
(cd /xconf && exec sh /xconf-live/cmd.sh </dev/null)
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
mark "exit $rc"
mark "wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
dmesg -n 1
if [ -f "$junit" ]; then send junit "$junit"; else mark junit-missing; fi
diff=${junit%.xml}.differential.xml
if [ -f "$diff" ]; then send diff "$diff"; fi
finish
