#!/usr/bin/env bash
# Checks the C ABI: include/crossrank.h against the built library.
#
#   1. The header compiles alone, twice in one unit (include guard), as strict C99, C11
#      and C++11 (-Wall -Wextra -Werror -pedantic).
#   2. The functions the header declares (its CROSSRANK_API declarations) are exactly the
#      crossrank_* symbols exported by libcrossrank.so and defined in libcrossrank.a.
#   3. examples/c/crossrank_example.c builds with the same strict flags, linked against
#      the shared library and, separately, the static one, and both runs pass on the
#      model (default tests/fixtures/tiny) with identical output.
#   4. With --install: tools/install-capi.sh into a temporary prefix, and the example
#      built from the installed files through pkg-config (shared, then static) runs.
#   5. With --valgrind: the example runs under valgrind with no memory errors and no
#      definite leaks. (The Rust runtime's and rayon's worker threads still alive at exit
#      show as "possibly lost"/"still reachable"; those are not errors, no suppressions.)
#
# Usage: tools/check-capi.sh [--release] [--install] [--valgrind] [--model DIR]
# Needs: cargo, cc, c++ (g++), nm; pkg-config for --install; valgrind for --valgrind.
# Env: CC, CXX, CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
cargo_flags=()
valgrind=0
install=0
model=tests/fixtures/tiny
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release; cargo_flags+=(--release) ;;
        --valgrind) valgrind=1 ;;
        --install) install=1 ;;
        --model) model="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "check-capi: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
CC=${CC:-cc}
CXX=${CXX:-c++}
lib_dir=${CARGO_TARGET_DIR:-target}/$profile
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check-capi: FAIL: $*" >&2; exit 1; }
step() { echo "check-capi: $*" >&2; }

step "cargo build --lib ${cargo_flags[*]:-}"
cargo build --lib --quiet "${cargo_flags[@]}"
so=$lib_dir/libcrossrank.so
a=$lib_dir/libcrossrank.a
[ -f "$so" ] && [ -f "$a" ] || fail "no $so or $a (Cargo.toml [lib] crate-type must list cdylib and staticlib)"

# 1. The header alone, strict.
strict=(-Wall -Wextra -Werror -pedantic -Iinclude)
printf '#include <crossrank.h>\n#include <crossrank.h>\nint main(void) { return crossrank_model_params_default().max_length != 0; }\n' > "$work/header.c"
for std in c99 c11; do
    step "header as $std"
    "$CC" -std=$std "${strict[@]}" -fsyntax-only "$work/header.c" || fail "include/crossrank.h does not compile as $std"
done
cp "$work/header.c" "$work/header.cpp"
step "header as c++11"
"$CXX" -std=c++11 "${strict[@]}" -fsyntax-only "$work/header.cpp" || fail "include/crossrank.h does not compile as C++11"

# 2. Declared functions = exported symbols. The header is preprocessed with CROSSRANK_API
# expanded to a marker, so comments and the usage example cannot be mistaken for
# declarations; each marked declaration's name is the identifier before its first `(`.
"$CC" -E -P -Iinclude -DCROSSRANK_API=__crossrank_export__ -DCROSSRANK_NODISCARD= include/crossrank.h \
    | tr '\n' ' ' | tr ';' '\n' | grep '__crossrank_export__' \
    | sed -e 's/(.*//' -e 's/[[:space:]]*$//' | grep -o '[A-Za-z_][A-Za-z0-9_]*$' | sort > "$work/declared"
[ -s "$work/declared" ] || fail "found no CROSSRANK_API declarations in include/crossrank.h"
nm -D --defined-only "$so" | awk '$2 == "T" && $3 ~ /^crossrank_/ { print $3 }' | sort > "$work/exported"
nm --defined-only "$a" 2>/dev/null | awk '$2 == "T" && $3 ~ /^crossrank_/ { print $3 }' | sort -u > "$work/static"
step "$(wc -l < "$work/declared") functions declared, $(wc -l < "$work/exported") exported"
diff -u --label header "$work/declared" --label libcrossrank.so "$work/exported" \
    || fail "include/crossrank.h and libcrossrank.so disagree (- only declared, + only exported)"
diff -u --label header "$work/declared" --label libcrossrank.a "$work/static" \
    || fail "include/crossrank.h and libcrossrank.a disagree"

# 3. The example, shared and static.
[ -d "$model" ] || fail "model directory $model not found (pass --model DIR)"
step "examples/c/crossrank_example.c (shared, static)"
"$CC" -std=c99 "${strict[@]}" examples/c/crossrank_example.c -L"$lib_dir" -lcrossrank \
    -Wl,-rpath,"$(cd "$lib_dir" && pwd)" -o "$work/example"
# The static library needs the system libraries Rust's std links (`rustc --print native-static-libs`).
"$CC" -std=c99 "${strict[@]}" examples/c/crossrank_example.c "$a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc \
    -o "$work/example-static"
for kind in shared static; do
    exe=$work/example; [ $kind = static ] && exe=$work/example-static
    "$exe" "$model" --device cpu > "$work/$kind.out" 2> "$work/$kind.err" \
        || { cat "$work/$kind.out" "$work/$kind.err" >&2; fail "the example failed ($kind)"; }
done
# Results and check outcomes must agree (messages may hold addresses, which differ).
same() { cmp -s <(cut -f1-4 "$1") <(cut -f1-4 "$2"); }
# Under valgrind the CPU reports no AVX-512, so the GEMM crate dispatches to other micro-kernels
# and sums in another order: the same lines, numbers equal to 1e-5 (abs + rel), not bit for bit.
close() {
    paste <(cut -f1-4 "$1") <(cut -f1-4 "$2") | awk -F'\t' '
        function far(a, b) { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; return d > 1e-5 + 1e-5 * m }
        NF != 8 || $1 != $5 || $2 != $6 { bad = 1; print "check-capi: line " NR " differs: " $0 > "/dev/stderr"; next }
        $1 == "pair" && (far($3, $7) || far($4, $8)) { bad = 1; print "check-capi: line " NR ": " $0 > "/dev/stderr" }
        $1 == "rank" && ($3 != $7 || far($4, $8)) { bad = 1; print "check-capi: line " NR ": " $0 > "/dev/stderr" }
        END { exit bad }' && [ "$(wc -l < "$1")" = "$(wc -l < "$2")" ]
}
same "$work/shared.out" "$work/static.out" || fail "shared and static builds print different results"
step "$(grep -c '^check' "$work/shared.out") error-path checks ok"

# 4. Installed files and pkg-config.
if [ $install = 1 ]; then
    step "tools/install-capi.sh + pkg-config"
    install_flags=(); [ $profile = debug ] && install_flags=(--debug)
    tools/install-capi.sh "${install_flags[@]}" "$work/prefix" > /dev/null
    export PKG_CONFIG_PATH=$work/prefix/lib/pkgconfig
    pc_cflags=$(pkg-config --cflags crossrank)
    pc_libs=$(pkg-config --libs crossrank)
    pc_static=$(pkg-config --variable=static_libs crossrank)
    # shellcheck disable=SC2086
    "$CC" -std=c99 -Wall -Wextra -Werror -pedantic examples/c/crossrank_example.c $pc_cflags $pc_libs \
        -Wl,-rpath,"$work/prefix/lib" -o "$work/example-pc"
    # shellcheck disable=SC2086
    "$CC" -std=c99 -Wall -Wextra -Werror -pedantic examples/c/crossrank_example.c $pc_cflags \
        -Wl,-Bstatic $pc_libs -Wl,-Bdynamic $pc_static -o "$work/example-pc-static"
    for exe in example-pc example-pc-static; do
        "$work/$exe" "$model" --device cpu > "$work/$exe.out" 2> "$work/$exe.err" \
            || { cat "$work/$exe.out" "$work/$exe.err" >&2; fail "the example built through pkg-config failed ($exe)"; }
        same "$work/shared.out" "$work/$exe.out" || fail "$exe prints different results"
    done
fi

# 5. Memory.
if [ $valgrind = 1 ]; then
    command -v valgrind > /dev/null || fail "valgrind not installed"
    step "valgrind (takes a while)"
    if ! valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
        "$work/example" "$model" --device cpu > "$work/valgrind.out" 2> "$work/valgrind.log"; then
        cat "$work/valgrind.log" >&2
        fail "valgrind found memory errors or definite leaks"
    fi
    close "$work/shared.out" "$work/valgrind.out" || fail "results differ under valgrind"
    grep -E '(ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable):' "$work/valgrind.log" \
        | sed 's/^==[0-9]*== */check-capi: valgrind: /' >&2
fi
step "ok"
