#!/usr/bin/env bash
# The example stage builds out of tree against the installed SDK, with find_package and with
# pkg-config, and its harness test passes; the built plugin then loads in the installed CLI.
set -euo pipefail
: "${OF_BUILD_DIR:?}" "${OF_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$OF_BUILD_DIR" --prefix "$prefix" >/dev/null

flags=()
san=""
if [ "${OF_SANITIZE:-0}" = 1 ]; then
  san="-fsanitize=address,undefined"
  flags=(-DCMAKE_C_FLAGS="$san" -DCMAKE_EXE_LINKER_FLAGS="$san" -DCMAKE_MODULE_LINKER_FLAGS="$san")
fi

# Only the installed copy of the example is used: nothing from the source tree.
src=$prefix/share/orderflow/examples/keyword-router
test -f "$src/keyword_router.c"

echo "== find_package"
cmake -S "$src" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" "${flags[@]}" >/dev/null
cmake --build "$tmp/cmake-build" >/dev/null
ctest --test-dir "$tmp/cmake-build" --output-on-failure
test -f "$tmp/cmake-build/keyword-router.so"
# Only the entry symbol is exported.
exports=$(nm -D --defined-only "$tmp/cmake-build/keyword-router.so" | awk '$2 == "T" {print $3}')
[ "$exports" = "orderflow_stage_entry" ] || { echo "unexpected exports: $exports"; exit 1; }

echo "== pkg-config"
cp -r "$src" "$tmp/pc-src"
libdir=$(dirname "$(find "$prefix" -name orderflow.pc | head -1)")
PKG_CONFIG_PATH=$libdir make -C "$tmp/pc-src" CFLAGS="-O1 -g -Wall -Wextra -Werror $san" \
  LDFLAGS="$san" check

echo "== the installed CLI loads the out-of-tree plugin"
mkdir -p "$tmp/plugins"
cp "$tmp/cmake-build/keyword-router.so" "$tmp/plugins/"
chmod 755 "$tmp/plugins" && chmod 644 "$tmp/plugins/keyword-router.so"
"$prefix/bin/orderflow" -P "$tmp/plugins" plugins keyword-router | grep -q "matched unmatched"
echo "sdk out-of-tree build: ok"
