#!/bin/sh
# Symbol-leak test: the dynamic symbols a libconure shared object defines must
# be exactly the global symbols of the linker version script, each carrying
# the version of the map node that lists it, all named conure_*.
#
# usage: check_symbols.sh NM LIBRARY MAPFILE [PUBLIC_HEADER...]
#
# With headers given, it also checks that every function the headers mark
# CONURE_API is in the map and every mapped symbol is declared there.
#
# It FAILS (exit 1), never skips, when an input is missing: a test that
# cannot look is not a test that passed.  Run by `meson test` (suite "abi")
# and by .ci/run on the installed library.
set -u

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

[ $# -ge 3 ] || fail "usage: $0 NM LIBRARY MAPFILE [PUBLIC_HEADER...]"
NM=$1
LIB=$2
MAP=$3
shift 3

[ -n "$NM" ] || fail "no nm program was found (install binutils)"
command -v "$NM" >/dev/null 2>&1 || fail "nm program '$NM' not found (install binutils)"
[ -f "$LIB" ] || fail "library '$LIB' does not exist"
[ -f "$MAP" ] || fail "version script '$MAP' does not exist"
for h in "$@"; do
    [ -f "$h" ] || fail "public header '$h' does not exist"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/conure-symbols.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT

# --- the map: "symbol node" for every global pattern, "node" for each node --
# Comments (/* */ and #) are dropped, then the script is read as tokens.
awk '
    { text = text $0 "\n" }
    END {
        # strip /* ... */ comments (possibly spanning lines)
        while ((s = index(text, "/*")) > 0) {
            rest = substr(text, s + 2)
            e = index(rest, "*/")
            if (e == 0) { print "ERROR unterminated comment"; exit 1 }
            text = substr(text, 1, s - 1) " " substr(rest, e + 2)
        }
        n = split(text, lines, "\n")
        flat = ""
        for (i = 1; i <= n; i++) {
            sub(/#.*/, "", lines[i])
            flat = flat " " lines[i]
        }
        gsub(/[{};:]/, " & ", flat)
        nt = split(flat, tok, /[ \t]+/)
        depth = 0; node = ""; section = "global"; expect_node = 1
        for (i = 1; i <= nt; i++) {
            t = tok[i]
            if (t == "") continue
            if (t == "{") { depth++; section = "global"; continue }
            if (t == "}") { depth--; expect_node = 0; continue }
            if (t == ";") { if (depth == 0) { expect_node = 1; node = "" } continue }
            if (t == ":") continue
            if (depth == 0) {
                if (expect_node) { node = t; print "NODE " t; expect_node = 0 }
                # else: the parent node name after "}"
                continue
            }
            if (t == "global" || t == "local") {
                if (tok[i + 1] == ":" || tok[i + 2] == ":") { section = t; continue }
            }
            if (section == "global") print "SYM " t " " node
        }
    }
' "$MAP" >"$tmp/map.raw" || fail "cannot parse '$MAP'"
grep -q '^ERROR' "$tmp/map.raw" && fail "cannot parse '$MAP': $(grep '^ERROR' "$tmp/map.raw")"

grep '^NODE ' "$tmp/map.raw" | cut -d' ' -f2 | sort >"$tmp/nodes"
grep '^SYM ' "$tmp/map.raw" | cut -d' ' -f2,3 | sort >"$tmp/map.syms"
[ -s "$tmp/nodes" ] || fail "'$MAP' defines no version node"
[ -s "$tmp/map.syms" ] || fail "'$MAP' lists no global symbol"

status=0
bad() {
    echo "FAIL: $*" >&2
    status=1
}

while read -r node; do
    case $node in
    CONURE_[0-9]*) ;;
    *) bad "version node '$node' in the map is not named CONURE_<version>" ;;
    esac
done <"$tmp/nodes"
while read -r sym node; do
    case $sym in
    conure_*) ;;
    *) bad "map exports '$sym' (node $node): public symbols must start with conure_" ;;
    esac
    case $sym in
    *'*'* | *'?'* | *'['*) bad "map exports the wildcard '$sym' (node $node): list symbols one by one" ;;
    esac
done <"$tmp/map.syms"
dups=$(cut -d' ' -f1 "$tmp/map.syms" | uniq -d)
[ -z "$dups" ] || bad "symbols listed more than once in the map: $dups"

# --- the library ------------------------------------------------------------
"$NM" -D --defined-only "$LIB" >"$tmp/nm.out" 2>"$tmp/nm.err" ||
    fail "'$NM -D --defined-only $LIB' failed: $(cat "$tmp/nm.err")"
[ -s "$tmp/nm.out" ] || fail "'$LIB' defines no dynamic symbol at all"
grep -q '@' "$tmp/nm.out" ||
    fail "'$NM' prints no symbol versions (binutils >= 2.35 needed), or '$LIB' is unversioned"

: >"$tmp/lib.syms"
# nm lines: "ADDRESS TYPE NAME[@@VERSION]" (the address may be absent)
while read -r l1 l2 l3; do
    if [ -n "$l3" ]; then type=$l2; name=$l3; else type=$l1; name=$l2; fi
    case $name in
    *@@*) sym=${name%%@@*}; ver=${name#*@@} ;;
    *@*) sym=${name%%@*}; ver=${name#*@}
         bad "'$sym' is exported with a non-default version ($name)"; continue ;;
    *) sym=$name; ver= ;;
    esac
    if [ "$type" = A ] && [ -z "$ver" ] && grep -qx "$sym" "$tmp/nodes"; then
        continue # the symbol that defines a version node itself
    fi
    case $sym in
    conure_*) ;;
    *) bad "'$LIB' exports '$name' (type $type), which is not a conure_ symbol"; continue ;;
    esac
    if [ -z "$ver" ]; then
        bad "'$sym' is exported without a symbol version"
        continue
    fi
    echo "$sym $ver" >>"$tmp/lib.syms"
done <"$tmp/nm.out"
sort -o "$tmp/lib.syms" "$tmp/lib.syms"

# set equality, versions included
missing=$(comm -23 "$tmp/map.syms" "$tmp/lib.syms")
extra=$(comm -13 "$tmp/map.syms" "$tmp/lib.syms")
if [ -n "$missing" ]; then
    bad "in the map but not exported by '$LIB' with that version (symbol node):"
    echo "$missing" | sed 's/^/    /' >&2
fi
if [ -n "$extra" ]; then
    bad "exported by '$LIB' but not in the map with that version (symbol version):"
    echo "$extra" | sed 's/^/    /' >&2
fi

# --- the public headers -----------------------------------------------------
if [ $# -gt 0 ]; then
    # a declaration reads "CONURE_API <type> <name>(" on one line
    # (preprocessor lines such as "#define CONURE_API ..." are left out)
    cat "$@" | grep -v '^[[:space:]]*#' | tr '\n' ' ' | grep -o 'CONURE_API[^;{()]*(' |
        sed -e 's/[ (*]*$//' -e 's/.*[ *]//' | sort -u >"$tmp/hdr.syms"
    [ -s "$tmp/hdr.syms" ] || bad "no CONURE_API function declared in: $*"
    cut -d' ' -f1 "$tmp/map.syms" | sort -u >"$tmp/map.names"
    nodecl=$(comm -13 "$tmp/hdr.syms" "$tmp/map.names")
    unmapped=$(comm -23 "$tmp/hdr.syms" "$tmp/map.names")
    [ -z "$unmapped" ] || bad "declared CONURE_API in the headers but missing from the map: $(echo "$unmapped" | tr '\n' ' ')"
    [ -z "$nodecl" ] || bad "in the map but declared in no public header: $(echo "$nodecl" | tr '\n' ' ')"
fi

if [ $status -eq 0 ]; then
    echo "ok: '$LIB' exports exactly the $(wc -l <"$tmp/map.syms") symbols of '$MAP', all versioned"
fi
exit $status
