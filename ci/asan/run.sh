#!/usr/bin/env bash
# Builds the native KVM addon with AddressSanitizer into reports/asan-native/
# and runs the addon's tests against that build (libasan preloaded into node).
# Leak detection is off: node itself keeps allocations alive at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=reports/asan-native
rm -rf "$out"
mkdir -p "$out"
cp -r native/binding.gyp native/src "$out/"
libasan=$(g++ -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
  echo "asan: libasan.so not found for g++; install the compiler's sanitizer runtime" >&2
  exit 3
fi
gyp="$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js"
[ -e "$gyp" ] || gyp=$(node -p "require.resolve('node-gyp/bin/node-gyp.js', { paths: [require('path').dirname(require.resolve('npm/package.json', { paths: ['$(npm root -g)'] }))] })")
# Build against the installed Node headers (no download): the same ones npm ci uses.
nodedir=$(cd "$(dirname "$(command -v node)")/.." && pwd)
[ -e "$nodedir/include/node/node_api.h" ] || { echo "asan: no Node headers under $nodedir/include/node" >&2; exit 3; }
CXXFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
  node "$gyp" rebuild --nodedir="$nodedir" --directory "$out" >"$out/build.log" 2>&1 || { tail -20 "$out/build.log" >&2; exit 3; }
mkdir -p "$out/build/guest"
cp native/build/guest/*.bin "$out/build/guest/"
echo '{ "ok": true }' > "$out/build/status.json"
[ "$(nm -D "$out/build/Release/xconf_kvm.node" | grep -c __asan_init)" -gt 0 ] || { echo "asan: the addon was not instrumented" >&2; exit 3; }
echo "asan: addon built with AddressSanitizer; running its tests"
XCONF_NATIVE_BUILD_DIR="$PWD/$out/build/" LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  npx vitest run harness/drivers/kvm
