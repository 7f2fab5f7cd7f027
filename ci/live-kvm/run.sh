#!/usr/bin/env bash
# Live Xen-on-KVM test environment (`npm run test:live`): builds Linux kernels with
# CONFIG_KVM_XEN=y, boots each under QEMU/TCG with an initramfs holding busybox,
# node and this repository, runs xconf against the guest's /dev/kvm, and merges the
# JUnit files that come back over the serial console into reports/live-kvm.xml.
# See ci/live-kvm/README.md for the environment variables and for debugging.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

default_cmd='node bin/xconf.js run --target=kvm --in-process --diff-against=model-kvm --reference-results=/xconf-live/reference-model-kvm.bin --expect=auto --junit=/tmp/junit.xml --diff-report=/tmp/junit.differential.xml'
default_qemu_cmd='node bin/xconf.js run --target=qemu --diff-against=model-kvm --reference-results=/xconf-live/reference-model-kvm.bin --expect=auto --junit=/tmp/qemu.xml --diff-report=/tmp/qemu.differential.xml'
kernels=${XCONF_LIVE_KERNELS:-6.1 6.12}
inner_cmd=${XCONF_LIVE_CMD:-$default_cmd}
guest_junit=${XCONF_LIVE_JUNIT:-/tmp/junit.xml}
timeout_s=${XCONF_LIVE_TIMEOUT:-1200}
cache=${XCONF_LIVE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/xconf}
jobs=${XCONF_LIVE_JOBS:-$(nproc)}
mem=${XCONF_LIVE_MEM:-4096}
smp=${XCONF_LIVE_SMP:-2}
append_extra=${XCONF_LIVE_APPEND:-}
shell_mode=${XCONF_LIVE_SHELL:-0}
quiet=${XCONF_LIVE_QUIET:-0}
report=${XCONF_LIVE_REPORT:-$repo/reports/live-kvm.xml}
# Kernel series whose xen.o is built with gcov and whose xen.c coverage is reported:
# a list of series, 1 (every selected kernel) or 0 (none). Default 6.12: instrumenting
# xen.o alone does not slow the run measurably, so the cached 6.12 is the covered one.
coverage_sel=${XCONF_LIVE_COVERAGE-6.12}
# 1: the initramfs also carries QEMU 10 from bookworm-backports (the qemu target's VMM;
# fetched with apt-get download through a private apt configuration, never installed),
# at /opt/qemu10, with XCONF_QEMU and XCONF_QEMU_DATA set for the inner command; after
# the inner command the guest also runs XCONF_LIVE_QEMU_CMD (default: the suites on the
# qemu target against model-kvm), whose JUnit comes back to <kernel>/qemu/.
with_qemu=${XCONF_LIVE_QEMU:-0}
qemu_cmd=${XCONF_LIVE_QEMU_CMD:-$default_qemu_cmd}
# Per-kernel files (serial log, JUnit, coverage) go beside the report, in a folder named
# after it: reports/live-kvm/ for the default report, so a second live run with its own
# XCONF_LIVE_REPORT (the CI's kvm fuzz) leaves the first one's files alone.
results=$(realpath -m "${report%.xml}")
work=$cache/work

die() {
	echo "live-kvm: error: $*" >&2
	exit 1
}
say() { echo "live-kvm: $*"; }

declare -A timing=()
timing_order=()
took() { # took <step> <start-seconds>
	timing[$1]=$((SECONDS - $2))
	timing_order+=("$1")
}

run_dir=''
build_dir=''
cleanup() {
	if [[ -n $run_dir ]]; then
		# Keep the last initramfs for manual boots (a rename: a concurrent run's copy is never torn).
		if [[ -f $run_dir/initramfs.cpio.gz ]]; then mv -f "$run_dir/initramfs.cpio.gz" "$work/initramfs.cpio.gz" || true; fi
		rm -rf "$run_dir"
	fi
	if [[ -n $build_dir && ${XCONF_LIVE_KEEP_BUILD:-0} != 1 ]]; then rm -rf "$build_dir"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- arguments

for k in $kernels; do
	[[ $k =~ ^[0-9]+\.[0-9]+$ ]] || die "XCONF_LIVE_KERNELS: '$k' is not a kernel series like 6.1"
done
[[ -n ${kernels// /} ]] || die "XCONF_LIVE_KERNELS is empty"
[[ $timeout_s =~ ^[0-9]+$ ]] || die "XCONF_LIVE_TIMEOUT must be a number of seconds, not '$timeout_s'"
[[ $jobs =~ ^[0-9]+$ ]] || die "XCONF_LIVE_JOBS must be a number, not '$jobs'"
case $coverage_sel in
0 | '') coverage_sel='' ;;
1) coverage_sel=$kernels ;;
*) for k in $coverage_sel; do
	[[ $k =~ ^[0-9]+\.[0-9]+$ ]] || die "XCONF_LIVE_COVERAGE: '$k' is not 0, 1 or a kernel series like 6.12"
done ;;
esac
# covered <series>: is this kernel built with gcov on xen.o?
covered() { [[ " $coverage_sel " == *" $1 "* ]]; }
if [[ -z ${XCONF_LIVE_CMD:-} && ! -f $repo/dist/cli/main.js ]]; then
	die "dist/cli/main.js is missing, so the default inner command ($default_cmd) cannot run; run 'npm ci' first, or set XCONF_LIVE_CMD"
fi
command -v node >/dev/null || die "node is not on PATH"
mkdir -p "$cache" "$work" "$results"
total_start=$SECONDS

# ---------------------------------------------------------------- packages

install_packages() {
	local t=$SECONDS pkgs=(build-essential bc bison flex libelf-dev libssl-dev xz-utils dwarves rsync kmod
		qemu-system-x86 busybox-static cpio)
	local k p missing=() sudo=()
	for k in $kernels; do pkgs+=("linux-source-$k"); done
	for p in "${pkgs[@]}"; do
		[[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		say "packages: all present"
		took apt "$t"
		return
	fi
	[[ ${XCONF_LIVE_NO_APT:-0} != 1 ]] || die "missing packages (${missing[*]}) and XCONF_LIVE_NO_APT=1"
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "missing packages (${missing[*]}); run as root or install sudo"
		sudo=(sudo)
	fi
	say "packages: installing ${missing[*]}"
	local aptlog=$work/apt.log
	"${sudo[@]}" apt-get update >"$aptlog" 2>&1 || die "apt-get update failed: $(tail -n1 "$aptlog")"
	for p in "${missing[@]}"; do
		if [[ ! $(apt-cache policy "$p" 2>/dev/null) =~ Candidate:\ [0-9] ]]; then
			if [[ $p == qemu-system-x86 ]]; then
				die "qemu-system-x86_64 cannot be installed: package qemu-system-x86 has no installation candidate in the configured apt sources"
			fi
			die "package $p has no installation candidate in the configured apt sources"
		fi
	done
	if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >>"$aptlog" 2>&1; then
		command -v qemu-system-x86_64 >/dev/null ||
			die "qemu-system-x86_64 cannot be installed: apt-get install failed: $(tail -n1 "$aptlog")"
		die "apt-get install failed (log: $aptlog): $(tail -n1 "$aptlog")"
	fi
	took apt "$t"
	say "packages: installed in ${timing[apt]} s"
}

install_packages
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed (package qemu-system-x86)"

# ---------------------------------------------------------------- kernels

declare -A kernel_image=() kernel_release=() kernel_dir=()

# Print the fragment lines of the given files that did not survive in config $1.
check_config() {
	local cfg=$1 line opt got
	shift
	while IFS= read -r line; do
		case $line in
		"# CONFIG_"*" is not set")
			opt=${line#\# }
			opt=${opt%% *}
			if got=$(grep -E "^$opt=" "$cfg"); then echo "$opt should be off but is $got"; fi
			;;
		CONFIG_*=*)
			grep -qxF -- "$line" "$cfg" && continue
			opt=${line%%=*}
			got=$(grep -E "^($opt=|# $opt is not set)" "$cfg" || echo "absent (unmet dependencies)")
			echo "$line but got $got"
			;;
		esac
	done < <(cat "$@")
}

build_kernel() {
	local series=$1 label=linux-$1
	local tarball=/usr/src/linux-source-$series.tar.xz
	[[ -f $tarball ]] || die "$label: $tarball is missing (package linux-source-$series)"
	local fragments=("$here/kernel.config")
	if [[ -f $here/kernel-$series.config ]]; then fragments+=("$here/kernel-$series.config"); fi
	# The coverage variant: gcov and KCOV on arch/x86/kvm/xen.o only (the Makefile lines
	# are part of the key). gcov counts xen.c's lines for the report; KCOV gives a fuzz
	# run (xconf fuzz --kcov) the xen.o edges each of its sequences reaches.
	local cov_line=''
	if covered "$series"; then
		fragments+=("$here/kernel-coverage.config")
		cov_line=$'GCOV_PROFILE_xen.o := y\nKCOV_INSTRUMENT_xen.o := y'
	fi
	local pkgver sha key dest
	pkgver=$(dpkg-query -W -f='${Version}' "linux-source-$series")
	sha=$({ cat "${fragments[@]}"; printf '%s' "$cov_line"; } | sha256sum | cut -c1-12)
	key=$(printf '%s' "$pkgver" | tr -c 'A-Za-z0-9.+-' '_')-$sha
	dest=$cache/kernels/$key
	mkdir -p "$cache/kernels" "$results/$label"

	local lock_fd
	exec {lock_fd}>"$cache/kernels/.$key.lock"
	flock "$lock_fd"
	if [[ -f $dest/bzImage && -f $dest/release && (-z $cov_line || -f $dest/gcov/xen.gcno) ]]; then
		kernel_image[$series]=$dest/bzImage
		kernel_dir[$series]=$dest
		kernel_release[$series]=$(<"$dest/release")
		say "$label: cached kernel ${kernel_release[$series]} ($dest)"
		exec {lock_fd}>&-
		return
	fi

	local t=$SECONDS blog=$results/$label/build.log
	local build=$cache/build/$key
	say "$label: building from $tarball (package $pkgver, fragment $sha, make -j$jobs; log $blog)"
	build_dir=$build # removed on exit unless XCONF_LIVE_KEEP_BUILD=1
	local src=$build/linux-source-$series
	if [[ ${XCONF_LIVE_KEEP_BUILD:-0} == 1 && -f $build/configured ]]; then
		# A kept tree of an interrupted build with the same key: make carries on where it stopped.
		say "$label: resuming the kept build in $build"
	else
		rm -rf "$build"
		mkdir -p "$build"
		tar -xf "$tarball" -C "$build" || die "$label: cannot extract $tarball"
		[[ -d $src ]] || die "$label: $tarball did not contain linux-source-$series/"
		if [[ -n $cov_line ]]; then printf '\n%s\n' "$cov_line" >>"$src/arch/x86/kvm/Makefile"; fi
		{
			make -C "$src" tinyconfig &&
				(cd "$src" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}") &&
				make -C "$src" olddefconfig
		} >"$blog" 2>&1 || die "$label: configuring failed; see $blog"
		local lost line
		lost=$(check_config "$src/.config" "${fragments[@]}")
		if [[ -n $lost ]]; then
			while IFS= read -r line; do echo "live-kvm: $label: config: $line" >&2; done <<<"$lost"
			die "$label: $(echo "$lost" | wc -l) option(s) of the config fragment did not survive olddefconfig: $(echo "$lost" | cut -d' ' -f1 | paste -sd' ')"
		fi
		touch "$build/configured"
	fi
	if ! make -C "$src" -j"$jobs" bzImage >>"$blog" 2>&1; then
		tail -n 20 "$blog" >&2
		die "$label: make bzImage failed; see $blog"
	fi
	local staged=$cache/kernels/.$key.tmp
	rm -rf "$staged"
	mkdir -p "$staged"
	cp "$src/arch/x86/boot/bzImage" "$staged/bzImage"
	cp "$src/.config" "$staged/config"
	cat "${fragments[@]}" >"$staged/fragment"
	make -s -C "$src" kernelrelease >"$staged/release"
	if [[ -n $cov_line ]]; then
		# What gcov needs later: the notes file, the source and the compiler that wrote them.
		[[ -f $src/arch/x86/kvm/xen.gcno ]] || die "$label: the coverage build left no arch/x86/kvm/xen.gcno"
		mkdir -p "$staged/gcov"
		cp "$src/arch/x86/kvm/xen.gcno" "$src/arch/x86/kvm/xen.c" "$staged/gcov/"
		printf '%s\n' "$src" >"$staged/gcov/build-dir"
		gcc -dumpfullversion >"$staged/gcov/gcc-version"
	fi
	rm -rf "$dest"
	mv -T "$staged" "$dest"
	if [[ ${XCONF_LIVE_KEEP_BUILD:-0} != 1 ]]; then rm -rf "$build"; fi
	build_dir=
	exec {lock_fd}>&-
	kernel_image[$series]=$dest/bzImage
	kernel_dir[$series]=$dest
	kernel_release[$series]=$(<"$dest/release")
	took "build $label" "$t"
	say "$label: built ${kernel_release[$series]} in ${timing["build $label"]} s ($dest)"
}

for k in $kernels; do build_kernel "$k"; done
if [[ ${XCONF_LIVE_BUILD_ONLY:-0} == 1 ]]; then
	say "kernels ready ($kernels); XCONF_LIVE_BUILD_ONLY=1: not booting"
	exit 0
fi

# ---------------------------------------------------------------- initramfs

# Copy file $1 (following symlinks) to the same path under directory $2.
# QEMU 10 (qemu-system-x86 and qemu-system-data from bookworm-backports), extracted
# under the cache: the host keeps its own QEMU (7.2), which boots the outer VM.
fetch_qemu10() {
	local t=$SECONDS dir=$cache/qemu10 apt=$cache/qemu10/apt
	if [[ -x $dir/root/usr/bin/qemu-system-x86_64 ]]; then
		qemu10=$dir/root
		return
	fi
	mkdir -p "$apt/lists/partial" "$apt/archives/partial"
	echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main' >"$apt/sources.list"
	local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o "Dir::State::Lists=$apt/lists" -o "Dir::Cache::Archives=$apt/archives" -o Debug::NoLocking=1)
	apt-get "${opts[@]}" update >"$apt/log" 2>&1 || die "apt-get update of bookworm-backports failed: $(tail -n1 "$apt/log")"
	(cd "$apt" && apt-get "${opts[@]}" download qemu-system-x86 qemu-system-data >>"$apt/log" 2>&1) ||
		die "apt-get download of QEMU 10 from bookworm-backports failed: $(tail -n1 "$apt/log")"
	rm -rf "$dir/root.tmp"
	local deb
	for deb in "$apt"/qemu-system-*.deb; do dpkg-deb -x "$deb" "$dir/root.tmp" || die "dpkg-deb -x $deb failed"; done
	"$dir/root.tmp/usr/bin/qemu-system-x86_64" --version >/dev/null 2>&1 ||
		die "the QEMU from bookworm-backports does not run here (ldd $dir/root.tmp/usr/bin/qemu-system-x86_64)"
	rm -f "$apt"/*.deb
	mv "$dir/root.tmp" "$dir/root"
	qemu10=$dir/root
	took qemu10 "$t"
}

copy_to() {
	mkdir -p "$2$(dirname "$1")"
	cp -L "$1" "$2$1"
}

build_initramfs() {
	local t=$SECONDS
	# Each run has its own directory, so two runs sharing the cache never boot each other's tree.
	# Leftovers of runs that were killed outright are removed after a day.
	find "$work" -mindepth 1 -maxdepth 1 -name 'run.*' -mmin +1440 -exec rm -rf {} + 2>/dev/null || true
	run_dir=$(mktemp -d "$work/run.XXXXXX")
	initrd=$run_dir/initramfs.cpio.gz
	nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	local s=$run_dir/stage
	mkdir -p "$s"/{bin,sbin,usr/bin,usr/sbin,usr/libexec,dev,proc,sys,tmp,etc,xconf,xconf-live}

	# busybox and its applets
	local bb
	bb=$(dpkg -L busybox-static | grep -E '/bin/busybox$' | head -n1)
	[[ -x $bb ]] || die "busybox-static's busybox binary not found"
	cp "$bb" "$s/bin/busybox"
	local applet
	while IFS= read -r applet; do
		[[ -e $s/$applet || -L $s/$applet ]] || ln -s /bin/busybox "$s/$applet"
	done < <("$s/bin/busybox" --list-full)

	# node, the libraries it and any native addons need, and the loader
	local nodebin f lib
	nodebin=$(node -p process.execPath)
	cp "$nodebin" "$s/usr/bin/node"
	local elves=("$nodebin")
	while IFS= read -r -d '' f; do elves+=("$f"); done < <(find "$repo" -name '*.node' -type f -not -path "$repo/.git/*" -print0)
	for f in "${elves[@]}"; do
		while IFS= read -r lib; do
			[[ -n $lib && ! -e $s$lib ]] || continue
			copy_to "$lib" "$s"
		done < <(ldd "$f" 2>/dev/null | grep -oE '/[^[:space:]]+' || true)
	done

	# QEMU 10 for the qemu target, with its libraries and data files
	if [[ $with_qemu == 1 ]]; then
		mkdir -p "$s/opt/qemu10/bin" "$s/opt/qemu10/share"
		cp "$qemu10/usr/bin/qemu-system-x86_64" "$s/opt/qemu10/bin/"
		cp -r "$qemu10/usr/share/qemu/." "$s/opt/qemu10/share/"
		while IFS= read -r lib; do
			[[ -n $lib && ! -e $s$lib ]] || continue
			copy_to "$lib" "$s"
		done < <(ldd "$qemu10/usr/bin/qemu-system-x86_64" 2>/dev/null | grep -oE '/[^[:space:]]+' || true)
	fi

	# the probe, /init and its configuration
	gcc -static -O2 -Wall -Werror -o "$s/usr/libexec/xconf-kvm-probe" "$here/probe.c" ||
		die "cannot compile the static probe $here/probe.c (libc6-dev from build-essential is needed)"
	install -m 0755 "$here/init.sh" "$s/init"
	sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
	{
		echo "XCONF_NONCE=$nonce"
		echo "XCONF_LIVE_JUNIT=$(sq "$guest_junit")"
		if [[ $with_qemu == 1 ]]; then echo 'export XCONF_QEMU=/opt/qemu10/bin/qemu-system-x86_64 XCONF_QEMU_DATA=/opt/qemu10/share'; fi
	} >"$s/xconf-live/config"
	printf '%s\n' "$inner_cmd" >"$s/xconf-live/cmd.sh"
	if [[ $with_qemu == 1 && -n $qemu_cmd ]]; then printf '%s\n' "$qemu_cmd" >"$s/xconf-live/cmd-qemu.sh"; fi
	echo 'root:x:0:0:root:/tmp:/bin/sh' >"$s/etc/passwd"
	echo 'root:x:0:' >"$s/etc/group"
	# Without root, /init falls back to opening the console after mounting devtmpfs.
	if ((EUID == 0)); then mknod -m 600 "$s/dev/console" c 5 1; fi

	# the project as it is in the working tree
	rsync -a --exclude=/.git --exclude=/reports --exclude=/coverage --exclude=node_modules/.cache \
		"$repo/" "$s/xconf/"
	# A parse cache of exactly these suites, made here in a fraction of a second: under TCG,
	# parsing the YAML again costs each process in the guest seconds (README, time).
	XCONF_CACHE_DIR=$s/xconf/node_modules/.cache/xconf node "$repo/bin/xconf.js" validate "$repo/suites" >/dev/null ||
		die "the suites do not validate: run 'node bin/xconf.js validate suites'"
	# The differential's reference, the model-kvm run of these suites by this build, made
	# here in about a second: run beside the target in the guest it took ~20 s of emulated
	# CPU from the run it checks (README, time). The guest's xconf refuses it if the build,
	# a case file or the seed differ (--reference-results).
	local rc=0
	(cd "$s/xconf" && node bin/xconf.js run --target=model-kvm --save-results="$s/xconf-live/reference-model-kvm.bin" \
		--junit="$run_dir/reference-model-kvm.xml" >/dev/null) || rc=$?
	((rc <= 1)) && [[ -f $s/xconf-live/reference-model-kvm.bin ]] ||
		die "the model-kvm reference run failed (exit $rc): run 'node bin/xconf.js run --target=model-kvm' to see why"

	local cpio=$run_dir/initramfs.cpio
	(cd "$s" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) >"$cpio" ||
		die "cpio failed"
	gzip -6 -c "$cpio" >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	local raw gz
	raw=$(stat -c %s "$cpio")
	gz=$(stat -c %s "$initrd")
	rm -f "$cpio"
	rm -rf "$s"
	took initramfs "$t"
	say "initramfs: $((gz / 1048576)) MiB gzipped, $((raw / 1048576)) MiB cpio, in ${timing[initramfs]} s ($initrd)"
}

qemu10=''
if [[ $with_qemu == 1 ]]; then fetch_qemu10; fi
build_initramfs

# ---------------------------------------------------------------- boot

# Prefix the serial console with the kernel label and hide the base64 payload.
show_console() {
	if [[ $quiet == 1 ]]; then
		cat >/dev/null
		return
	fi
	awk -v p="[$1] " -v m="@@xconf-live:$nonce:" '
		{ sub(/\r$/, "") }
		index($0, m) && $0 ~ /(junit|diff|gcda)-begin / { print p $0; skip = 1; fflush(); next }
		index($0, m) && $0 ~ /(junit|diff|gcda)-end / { skip = 0 }
		!skip { print p $0; fflush() }'
}

# Value after marker $2 in the serial log $1 (last occurrence), or empty.
marker() {
	grep -a -F "@@xconf-live:$nonce:$2" "$1" | tail -n1 | sed "s/.*@@xconf-live:$nonce:$2 *//" || true
}

declare -A verdict=()
extra_summary=()

# Decode payload $2 (junit, diff, gcda) of serial log $1 into file $3. Returns 1 when it was sent
# but its sha256 does not match; no file when it was not sent.
payload() {
	local log=$1 what=$2 out=$3 want got
	rm -f "$out"
	grep -a -qF "@@xconf-live:$nonce:$what-begin" "$log" || return 0
	want=$(marker "$log" "$what-end")
	awk -v m="@@xconf-live:$nonce:" -v w="$what" '
		index($0, m w "-end") { exit }
		on && /^[A-Za-z0-9+\/=]+$/ { print }
		index($0, m w "-begin") { on = 1 }' "$log" | base64 -d 2>/dev/null | gzip -dc >"$out" 2>/dev/null || true
	got=$(sha256sum "$out" | cut -d' ' -f1)
	if [[ -z $want || $got != "$want" ]]; then
		rm -f "$out"
		return 1
	fi
}

boot_kernel() {
	local series=$1 label=linux-$1
	local dir=$results/$label
	mkdir -p "$dir"
	rm -f "$dir/serial.log" "$dir/junit.xml" "$dir/differential.xml" "$dir/meta"
	local append="console=ttyS0 panic=-1${append_extra:+ $append_extra}"
	if covered "$series"; then append+=" xconf.coverage=1"; fi
	[[ $shell_mode != 1 ]] || append+=" xconf.shell=1"
	local serial=stdio
	[[ $shell_mode != 1 ]] || serial=mon:stdio
	local qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp "$smp" -m "$mem" -display none -nodefaults
		-serial "$serial" -no-reboot -kernel "${kernel_image[$series]}" -initrd "$initrd" -append "$append")
	# One TCG VM at a time on this machine (live-kvm, live-xen and manual boots share the
	# lock): two at once on 2 cores double every build and boot and invite timeouts.
	local tcg_fd
	exec {tcg_fd}>"$cache/.tcg.lock"
	flock -n "$tcg_fd" || { say "$label: waiting for another TCG VM to finish ($cache/.tcg.lock)"; flock "$tcg_fd"; }
	say "$label: booting ${kernel_release[$series]} (timeout $timeout_s s; serial log $dir/serial.log)"
	say "$label: $(printf '%q ' "${qemu[@]}")"
	local t=$SECONDS rc
	set +e
	if [[ $shell_mode == 1 ]]; then
		timeout --foreground "$timeout_s" "${qemu[@]}" | tee "$dir/serial.log"
		rc=${PIPESTATUS[0]}
	else
		timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null 2>&1 | tee "$dir/serial.log" | show_console "$label"
		rc=${PIPESTATUS[0]}
	fi
	set -e
	exec {tcg_fd}>&-
	local secs=$((SECONDS - t))
	took "boot $label" "$t"

	local log=$dir/serial.clean
	tr -d '\r' <"$dir/serial.log" >"$log"
	local code cap release taint fatal status=ok reason=
	rm -f "$dir/xen.gcda" "$dir/xen.c.gcov" "$dir/xen-c-coverage.json"
	code=$(marker "$log" exit)
	cap=$(marker "$log" probe | grep -oE 'KVM_CAP_XEN_HVM=0x[0-9a-f]+' | cut -d= -f2 || true)
	release=$(marker "$log" release)
	taint=$(marker "$log" taint)
	fatal=$(marker "$log" fatal)

	if ! payload "$log" junit "$dir/junit.xml"; then
		status=failed reason="the JUnit file was corrupted on the serial console (sha256 mismatch)"
	elif ! payload "$log" diff "$dir/differential.xml"; then
		status=failed reason="the differential report was corrupted on the serial console (sha256 mismatch)"
	fi
	# The qemu target's run (XCONF_LIVE_QEMU=1), in a result folder of its own.
	local qdir=$dir/qemu
	rm -rf "$qdir"
	if grep -a -qF "@@xconf-live:$nonce:qemu-exit" "$log"; then
		mkdir -p "$qdir"
		local qstatus=ok qreason='' qcode
		qcode=$(marker "$log" qemu-exit)
		if ! payload "$log" qemu-junit "$qdir/junit.xml"; then
			qstatus=failed qreason="the qemu target's JUnit file was corrupted on the serial console (sha256 mismatch)"
		elif ! payload "$log" qemu-diff "$qdir/differential.xml"; then
			qstatus=failed qreason="the qemu target's differential report was corrupted on the serial console (sha256 mismatch)"
		elif [[ ! -f $qdir/junit.xml ]]; then
			qstatus=failed qreason="the qemu command (exit $qcode) left no JUnit file"
		fi
		{
			echo "label=$label/qemu"
			echo "target=qemu"
			echo "series=$series"
			echo "release=$(marker "$log" release)"
			echo "cap=$(marker "$log" probe | grep -oE 'KVM_CAP_XEN_HVM=0x[0-9a-f]+' | cut -d= -f2 || true)"
			echo "exit=$qcode"
			echo "status=$qstatus"
			echo "reason=$qreason"
			echo "boot_seconds=0"
			echo "taint=$(marker "$log" taint)"
			echo "wall_seconds=$(marker "$log" qemu-wall)"
		} >"$qdir/meta"
	elif [[ $with_qemu == 1 && -n $qemu_cmd ]]; then
		status=failed reason="the guest never ran the qemu target's command"
	fi
	local wall cov=''
	wall=$(marker "$log" wall)
	if covered "$series" && [[ $status == ok ]]; then
		if ! payload "$log" gcda "$dir/xen.gcda"; then
			status=failed reason="xen.gcda was corrupted on the serial console (sha256 mismatch)"
		elif [[ ! -f $dir/xen.gcda ]]; then
			status=failed reason="the coverage kernel sent no xen.gcda"
		elif ! cov=$(node "$here/coverage.mjs" report --label "$label" --notes "${kernel_dir[$series]}/gcov" \
			--gcda "$dir/xen.gcda" --kernel "${release:-${kernel_release[$series]}}" --out "$dir"); then
			status=failed reason="gcov could not read xen.gcda"
		fi
	fi
	if ((rc == 124 || rc == 137)); then
		status=failed reason="the boot timed out after $timeout_s s"
	elif [[ -n $fatal ]]; then
		status=failed reason="guest: $fatal"
	elif [[ -z $code ]]; then
		status=failed reason="the guest reported no exit code (qemu exit $rc)"
	elif [[ $status == ok && ! -f $dir/junit.xml ]]; then
		status=failed reason="the inner command (exit $code) left no JUnit file at $guest_junit"
	fi
	{
		echo "label=$label"
		echo "series=$series"
		echo "release=${release:-${kernel_release[$series]}}"
		echo "cap=$cap"
		echo "exit=$code"
		echo "status=$status"
		echo "reason=$reason"
		echo "boot_seconds=$secs"
		echo "taint=$taint"
		echo "wall_seconds=$wall"
	} >"$dir/meta"
	# One line per kernel after the merged summary: the inner command's wall time in the
	# guest and, for a coverage kernel, gcov's figures for xen.c.
	local qwall=''
	if [[ -f $qdir/meta ]]; then qwall="; qemu target $(grep '^wall_seconds=' "$qdir/meta" | cut -d= -f2 || true) s"; fi
	extra_summary+=("$(printf '%-11s in-guest wall %s s' "$label" "${wall:-?}")${cov:+; ${cov#"$label "}}$qwall")
	local qok=1
	if [[ -f $qdir/meta ]]; then
		grep -qx 'status=ok' "$qdir/meta" && grep -qxE 'exit=(0|4)' "$qdir/meta" || qok=0
	fi
	if [[ $status == ok && ($code == 0 || $code == 4) && $qok == 1 ]]; then
		verdict[$series]=ok
	else
		verdict[$series]=failed
	fi
	say "$label: done in $secs s: KVM_CAP_XEN_HVM=${cap:-?} exit=${code:-none} ${reason:+($reason)}"
}

result_dirs=()
for k in $kernels; do
	boot_kernel "$k"
	result_dirs+=("$results/linux-$k")
done

# ---------------------------------------------------------------- report

echo
echo "live-kvm summary"
node "$here/merge-junit.mjs" --out "$report" "${result_dirs[@]}" || die "merging the JUnit files failed"
# The differentials (kvm against model-kvm) in a report of their own, so the cases are counted once.
diff_dirs=()
for d in "${result_dirs[@]}"; do [[ -f $d/differential.xml ]] && diff_dirs+=("$d"); done
if ((${#diff_dirs[@]})); then
	node "$here/merge-junit.mjs" --file differential.xml --no-boot --out "${report%.xml}.differential.xml" "${diff_dirs[@]}" ||
		die "merging the differential reports failed"
fi
for line in "${extra_summary[@]}"; do echo "$line"; done
took total "$total_start"
for step in "${timing_order[@]}"; do printf '  %-18s %5d s\n' "$step" "${timing[$step]}"; done

failed=()
for k in $kernels; do [[ ${verdict[$k]} == ok ]] || failed+=("linux-$k"); done
if ((${#failed[@]})); then
	say "FAILED: ${failed[*]} (serial logs under $results)"
	exit 1
fi
say "passed on all kernels ($kernels)"
