#!/usr/bin/env bash
# label: cli
# The installed SDK: `cmake --install` into a prefix, then build the rng
# plugin OUT OF TREE with only `pkg-config smvmm-plugin` and the installed
# headers, and load it with the installed smvmm through plugin_dir.
set -u
B=${SMVMM_BUILD_DIR:?}
S=${SMVMM_SOURCE_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0; n=0
check() { local d=$1; shift; n=$((n + 1)); if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fail=$((fail + 1)); fi; }

cmake --install "$B" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1
check "cmake --install succeeds" [ $? = 0 ]
pc=$(find "$tmp/prefix" -name smvmm-plugin.pc | head -1)
check "smvmm-plugin.pc installed ($pc)" [ -n "$pc" ]
check "plugin.h and backend.h installed" test -f "$tmp/prefix/include/smvmm/plugin.h" -a -f "$tmp/prefix/include/smvmm/backend.h"
export PKG_CONFIG_PATH=$(dirname "$pc")
mkdir -p "$tmp/plugins"
# shellcheck disable=SC2046
cc -std=gnu11 -Wall -Wextra -Werror -O2 $(pkg-config --cflags smvmm-plugin) \
	-o "$tmp/plugins/smvmm-virtio-rng.so" "$S/plugins/rng/rng.c" \
	$(pkg-config --libs smvmm-plugin) 2>"$tmp/cc.log"
check "out-of-tree build of plugins/rng with pkg-config flags" [ $? = 0 ]
cat "$tmp/cc.log"
check "it exports exactly one dynamic symbol, smvmm_plugin_v1" \
	[ "$(nm -D --defined-only "$tmp/plugins/smvmm-virtio-rng.so" | awk '$2 ~ /[TDRB]/ {print $3}')" = smvmm_plugin_v1 ]
cat >"$tmp/m.ini" <<INI
[machine]
plugin_dir = $tmp/plugins
[boot]
kernel = $B/probe.elf
[device.r]
type = virtio-rng
INI
bin=$(find "$tmp/prefix" -name smvmm -type f | head -1)
# The backend comes from the installed plugin directory; the binary finds
# libsmvmm-core through its $ORIGIN-relative RPATH.
SMVMM_PLUGIN_PATH=$(dirname "$(find "$tmp/prefix" -name smvmm-backend-kvm.so | head -1)") \
	"$bin" --check -c "$tmp/m.ini" >"$tmp/check.out" 2>&1
check "installed smvmm loads the out-of-tree plugin from plugin_dir" grep -q "$tmp/plugins/smvmm-virtio-rng.so" "$tmp/check.out"
grep -q "$tmp/plugins/smvmm-virtio-rng.so" "$tmp/check.out" || cat "$tmp/check.out"
echo "$((n - fail)) passed, $fail failed"
[ $fail = 0 ]
