#!/usr/bin/env bash
# Prints a directory holding the kernel's own test tools, taken from Debian's
# linux-source-6.12 (installed with apt-get when missing): tools/testing/kunit
# (kunit.py parse, the KTAP parser) and tools/testing/selftests/kselftest (the
# kselftest runner). Extracted once per package version into the cache.
set -euo pipefail
series=${XCONF_KERNEL_TOOLS_SERIES:-6.12}
pkg=linux-source-$series
tarball=/usr/src/$pkg.tar.xz
cache=${XCONF_LIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xconf}
if [[ ! -f $tarball ]]; then
	if [[ $(id -u) != 0 ]]; then echo "kernel-tools: $tarball is missing; install package $pkg" >&2; exit 3; fi
	{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg"; } >&2 ||
		{ echo "kernel-tools: cannot install $pkg" >&2; exit 3; }
fi
ver=$(dpkg-query -W -f='${Version}' "$pkg" | tr -c 'A-Za-z0-9.+-' '_')
dest=$cache/kernel-tools/$ver
if [[ ! -f $dest/.complete ]]; then
	rm -rf "$dest.tmp"
	mkdir -p "$dest.tmp"
	tar -xf "$tarball" -C "$dest.tmp" --strip-components=1 --wildcards \
		"$pkg/tools/testing/kunit/*" "$pkg/tools/testing/selftests/kselftest/*" \
		"$pkg/tools/testing/selftests/kselftest_install.sh" "$pkg/tools/testing/selftests/run_kselftest.sh" >&2 ||
		{ echo "kernel-tools: cannot extract the tools from $tarball" >&2; exit 3; }
	touch "$dest.tmp/.complete"
	rm -rf "$dest"
	mv "$dest.tmp" "$dest"
fi
echo "$dest"
