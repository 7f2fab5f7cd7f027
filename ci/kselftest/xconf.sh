#!/bin/bash
# SPDX-License-Identifier: MIT
#
# kselftest wrapper for xconf: runs the Xen ABI conformance cases against the
# running kernel's KVM (or another xconf target) and prints KTAP on stdout.
# Exit codes are kselftest's: 0 pass, 1 fail, 4 skip (KSFT_SKIP).
#
# Environment:
#   XCONF_DIR      the xconf checkout, built (npm ci); default: two levels above this file
#   XCONF_TARGET   kvm (default) | model | model-kvm
#   XCONF_SUITES   case files or folders to run (default: $XCONF_DIR/suites)
#   XCONF_REPORTS  folder for junit.xml and xconf.ktap (default: a temporary folder, removed)
# Arguments are passed on to `xconf run` (e.g. --filter='evtchn/*' --expect=auto);
# the kselftest runner passes $KSELFTEST_XCONF_SH_ARGS.
ksft_pass=0 ksft_fail=1 ksft_skip=4

here=$(cd "$(dirname "$0")" && pwd)
xconf_dir=${XCONF_DIR:-$(cd "$here/../.." && pwd)}
target=${XCONF_TARGET:-kvm}

skip() { # skip <reason>: a whole-run SKIP in KTAP
	printf 'KTAP version 1\n1..0 # SKIP %s\n' "$1"
	exit $ksft_skip
}

command -v node >/dev/null 2>&1 || skip "node is not installed (xconf needs Node.js 20)"
[ -f "$xconf_dir/bin/xconf.js" ] && [ -d "$xconf_dir/dist" ] ||
	skip "no built xconf at $xconf_dir (set XCONF_DIR to a checkout where 'npm ci' ran)"
if [ "$target" = kvm ] && [ ! -c /dev/kvm ]; then
	skip "no /dev/kvm on this machine"
fi

if [ -n "${XCONF_REPORTS:-}" ]; then
	reports=$XCONF_REPORTS
	mkdir -p "$reports"
else
	reports=$(mktemp -d "${TMPDIR:-/tmp}/xconf-kselftest.XXXXXX")
	trap 'rm -rf "$reports"' EXIT
fi

# shellcheck disable=SC2086 # XCONF_SUITES is a list of paths
node "$xconf_dir/bin/xconf.js" run --target="$target" --junit="$reports/junit.xml" \
	--ktap="$reports/xconf.ktap" "$@" ${XCONF_SUITES:-"$xconf_dir/suites"} >&2
rc=$?

if [ -s "$reports/xconf.ktap" ]; then
	cat "$reports/xconf.ktap"
else
	printf 'KTAP version 1\n1..1\nnot ok 1 xconf # xconf run exited %d before writing KTAP\n' "$rc"
fi
case $rc in
0) exit $ksft_pass ;;
4) exit $ksft_skip ;;
*) exit $ksft_fail ;; # 1 a case failed; 2 usage or suite error; 3 environment error
esac
