#!/usr/bin/env bash
# Builds the library (release) and installs the C ABI under PREFIX:
#
#   PREFIX/lib/libcrossrank.so          shared library
#   PREFIX/lib/libcrossrank.a           static library
#   PREFIX/include/crossrank.h          the header
#   PREFIX/lib/pkgconfig/crossrank.pc   rendered from include/crossrank.pc.in
#
# Usage: tools/install-capi.sh [--debug] PREFIX
#   --debug   install the debug build (quicker to build; for testing this script)
#   DESTDIR   staging root, as in `make install`: files go to $DESTDIR$PREFIX while the
#             .pc file still says PREFIX.
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs crossrank)
# Linux only (the file names and static libraries below are Linux's).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
cargo_flags=(--release)
if [ "${1:-}" = --debug ]; then
    profile=debug
    cargo_flags=()
    shift
fi
if [ $# -ne 1 ] || [ "${1:0:1}" != / ]; then
    echo "usage: tools/install-capi.sh [--debug] PREFIX   (PREFIX absolute, e.g. /usr/local)" >&2
    exit 2
fi
prefix=${1%/}
[ "$(uname -s)" = Linux ] || { echo "install-capi: only Linux is supported" >&2; exit 1; }

cargo build --lib "${cargo_flags[@]}"
lib_dir=${CARGO_TARGET_DIR:-target}/$profile
version=$(sed -n 's/^version = "\(.*\)"/\1/p;T;q' Cargo.toml)
# `rustc --print native-static-libs` for x86_64/aarch64-unknown-linux-gnu.
static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

dest=${DESTDIR:-}$prefix
install -d "$dest/lib/pkgconfig" "$dest/include"
install -m 755 "$lib_dir/libcrossrank.so" "$dest/lib/libcrossrank.so"
install -m 644 "$lib_dir/libcrossrank.a" "$dest/lib/libcrossrank.a"
install -m 644 include/crossrank.h "$dest/include/crossrank.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" -e "s|@STATIC_LIBS@|$static_libs|" \
    include/crossrank.pc.in > "$dest/lib/pkgconfig/crossrank.pc"
echo "installed crossrank $version ($profile) into $dest"
