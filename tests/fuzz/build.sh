#!/bin/bash
# Builds every tests/fuzz/fuzz_*.c into a libFuzzer binary (ASan + UBSan),
# compiling the daemon sources it needs directly, outside automake (the
# fuzzing flags do not mix with the normal build's).
#
# Usage: tests/fuzz/build.sh OUTDIR [BUILDDIR]
#   BUILDDIR: a configured build tree whose proto/ holds the generated
#   protobuf-c files (default: _build/plain, then the source tree).
#
# What a target needs, it says itself in its leading comment:
#   FUZZ_SOURCES: daemon/config.c daemon/netaddr.c   (source-tree or
#                                                    BUILDDIR paths)
#   FUZZ_PKGS: yaml-0.1                               (pkg-config modules)
# A target without a FUZZ_SOURCES line gets the closure of its quoted
# includes instead (x.h -> x.c next to it in daemon/, sync/ or proto/).
# A target whose sources, headers or packages are missing is skipped with a
# message, not failed.  Prints "built NAME" / "skipped NAME: why" and exits
# 1 only when a target that has all it needs does not compile.
#
# Env: CC (default clang), FUZZ_CFLAGS (replaces the default flags).
set -u
set -f		# names from the targets are split into words, never globbed
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build.sh OUTDIR [BUILDDIR]}
build=${2:-}
if [ -z "$build" ]; then
	if [ -d "$top/_build/plain/proto" ]; then build=$top/_build/plain; else build=$top; fi
fi
build=$(cd "$build" 2>/dev/null && pwd) || { echo "build.sh: no build dir $2" >&2; exit 1; }
cc=${CC:-clang}
cflags=${FUZZ_CFLAGS:--g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)

incdirs=("$top/daemon" "$top/sync")
[ -d "$build/proto" ] && incdirs+=("$build/proto")
[ -d "$top/proto" ] && incdirs+=("$top/proto")

# Finds a file named in a target (source-tree path, then BUILDDIR path).
locate() {
	local f
	for f in "$top/$1" "$build/$1"; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

# Prints the header's path, then its own source if any (x.h -> x.c,
# x.pb-c.h -> x.pb-c.c, same dir); fails when no include dir has it.
header_files() {
	local d
	for d in "${incdirs[@]}"; do
		[ -f "$d/$1" ] || continue
		echo "$d/$1"
		[ -f "$d/${1%.h}.c" ] && echo "$d/${1%.h}.c"
		return 0
	done
	return 1
}

# Sets srcs (absolute paths) by following quoted includes from $1; fails
# with a message on a header nobody provides.
include_closure() {
	local todo=("$1") seen=" " f h s
	srcs=()
	while [ ${#todo[@]} -gt 0 ]; do
		f=${todo[0]}; todo=("${todo[@]:1}")
		# shellcheck disable=SC2013	# header names have no spaces
		for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
			case "$seen" in *" $h "*) continue ;; esac
			seen="$seen$h "
			if ! s=$(header_files "$h"); then
				why="header $h not found"
				return 1
			fi
			for f in $s; do
				todo+=("$f")
				case "$f" in *.c) srcs+=("$f") ;; esac
			done
		done
	done
	return 0
}

# pkg-config modules for the system headers that files include, for
# targets that do not list FUZZ_PKGS.
include_pkgs() {
	sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*<\([^>]*\)>.*/\1/p' "$@" |
	while read -r h; do
		case "$h" in
		yaml.h) echo yaml-0.1 ;;
		protobuf-c/*) echo libprotobuf-c ;;
		openssl/*) echo openssl ;;
		libmnl/*) echo libmnl ;;
		libnetfilter_queue/*) echo libnetfilter_queue ;;
		libnetfilter_conntrack/*) echo libnetfilter_conntrack ;;
		systemd/*) echo libsystemd ;;
		esac
	done | sort -u | tr '\n' ' '
}

rc=0
set +f
targets=("$top"/tests/fuzz/fuzz_*.c)
set -f
for target in "${targets[@]}"; do
	[ -f "$target" ] || continue
	name=$(basename "$target" .c)
	why=""
	srcs=()
	decl=$(sed -n 's/^[[:space:]/*]*FUZZ_SOURCES:\(.*\)$/\1 /p' "$target" | head -1)
	pkgs=$(sed -n 's/^[[:space:]/*]*FUZZ_PKGS:\(.*\)$/\1/p' "$target" | head -1)
	decl=${decl%%\*/*} pkgs=${pkgs%%\*/*}
	if [ -n "$decl" ]; then
		for s in $decl; do
			if ! p=$(locate "$s"); then why="source $s not found"; break; fi
			srcs+=("$p")
		done
	else
		include_closure "$target" || true
		[ -z "$pkgs" ] && pkgs=$(include_pkgs "$target" "${srcs[@]}")
	fi
	pkgflags=""
	if [ -z "$why" ] && [ -n "$pkgs" ]; then
		# shellcheck disable=SC2086	# a list of modules
		if ! pkgflags=$(pkg-config --cflags --libs $pkgs 2>/dev/null); then
			why="pkg-config modules missing: $pkgs"
		fi
	fi
	if [ -n "$why" ]; then
		echo "skipped $name: $why"
		continue
	fi
	iflags=()
	for d in "${incdirs[@]}"; do iflags+=("-I$d"); done
	# shellcheck disable=SC2086
	if "$cc" $cflags -D_GNU_SOURCE -DPACKAGE_VERSION='"fuzz"' "${iflags[@]}" \
	    -o "$out/$name" "$target" "${srcs[@]}" $pkgflags -lm \
	    >"$out/$name.build.log" 2>&1; then
		echo "built $name"
	else
		echo "FAILED $name (see $out/$name.build.log)"
		tail -20 "$out/$name.build.log" >&2
		rc=1
	fi
done
exit $rc
