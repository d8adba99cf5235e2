#!/usr/bin/env bash
# compile_time.sh [-n RUNS] [-I INCLUDE_DIR] [-B BASELINE_INCLUDE_DIR] [-q] [-k] [COMPILER]
#
# How much compile time do frugal's headers cost? Times, for COMPILER (default: $CXX, else
# g++) with $CXXFLAGS (default "-std=c++17 -O2"), the compilation (-c, to /dev/null) of:
#
#   std headers   a TU that includes only the headers <frugal/frugal.hpp> includes from outside
#                 frugal -- the standard (and system: <fcntl.h>, <pthread.h>, ...) headers that a
#                 frugal header includes directly, found from `COMPILER -E -H` on the umbrella,
#                 in the order the umbrella first opens them. It is the floor: what a TU that
#                 includes frugal.hpp pays whatever frugal's own code does.
#   frugal.hpp    a TU with just `#include <frugal/frugal.hpp>`.
#   each header   a TU with just `#include <frugal/X.hpp>`, for every public header
#                 INCLUDE_DIR/frugal/*.hpp (-q: skip these; only the two rows above).
#
# The time is the compiler's CPU time, user + sys (bash's `time`, i.e. getrusage of the
# children: the g++ driver, cc1plus and as), not wall: other work on the machine then
# disturbs it much less. Every TU is compiled RUNS times (default 5), in rounds -- each round
# compiles every TU once, so that a change in the machine's load falls on all of them alike --
# and the minimum is kept. Prints a markdown table: seconds, ratio to the std-headers TU, and
# the number of non-blank lines of the preprocessed TU. A header that does not compile alone
# with these flags (a missing third-party dependency: Google Benchmark, nlohmann_json) gets a
# "does not compile" row instead.
#
#   -n RUNS          compilations per TU (default 5); the minimum CPU time is reported.
#   -I INCLUDE_DIR   the include directory holding frugal/ (default: this repository's
#                    include/).
#   -B BASELINE      a second include directory (a copy of an older tree) measured in the same
#                    rounds: the table then has its columns too, before/after under the same
#                    conditions. Its std-headers TU is computed from its own umbrella.
#   -q               quick: only the std-headers and frugal.hpp rows.
#   -k               keep the generated TUs (their directory is printed) instead of deleting them.
#   CXXFLAGS         flags for every compilation (default "-std=c++17 -O2").
#   EXTRA_CXXFLAGS   appended (default: -I/usr/include/eigen3 when that exists, so that
#                    <frugal/eigen.hpp> compiles alone).
#
# The ratio "frugal.hpp / std headers" is the number to watch; absolute seconds depend on the
# machine and its load. Examples:
#   benchmarks/compile_time.sh                      # every header, g++, 5 rounds
#   benchmarks/compile_time.sh -q -n 9 clang++      # umbrella only, clang, 9 rounds
#   benchmarks/compile_time.sh -B /tmp/old/include  # this tree against an older copy
set -euo pipefail

runs=5
quick=0
keep=0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
include_dir="$here/../include"
baseline_dir=""
usage() { echo "usage: $0 [-n RUNS] [-I INCLUDE_DIR] [-B BASELINE_INCLUDE_DIR] [-q] [-k] [COMPILER]" >&2; }
while getopts "n:I:B:qkh" opt; do
  case "$opt" in
    n) runs="$OPTARG" ;;
    I) include_dir="$OPTARG" ;;
    B) baseline_dir="$OPTARG" ;;
    q) quick=1 ;;
    k) keep=1 ;;
    h) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -le 1 ]] || { usage; exit 2; }
cxx="${1:-${CXX:-g++}}"
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "compile_time.sh: -n needs a positive integer, got '$runs'" >&2
  exit 2
fi
if ! command -v "$cxx" >/dev/null; then
  echo "compile_time.sh: no compiler '$cxx'" >&2
  exit 2
fi
dirs=()
for d in "$include_dir" ${baseline_dir:+"$baseline_dir"}; do
  if [[ ! -f "$d/frugal/frugal.hpp" ]]; then
    echo "compile_time.sh: no frugal/frugal.hpp under $d" >&2
    exit 2
  fi
  dirs+=("$(realpath -e "$d")")
done
read -r -a cxxflags <<<"${CXXFLAGS:--std=c++17 -O2}"
if [[ -z "${EXTRA_CXXFLAGS+set}" ]]; then
  EXTRA_CXXFLAGS=""
  [[ -d /usr/include/eigen3 ]] && EXTRA_CXXFLAGS="-I/usr/include/eigen3"
fi
read -r -a extra <<<"$EXTRA_CXXFLAGS"
flags=("${cxxflags[@]}" "${extra[@]}")

work="$(mktemp -d "${TMPDIR:-/tmp}/compile_time.XXXXXX")"
if [[ "$keep" == 1 ]]; then
  echo "compile_time.sh: TUs kept in $work" >&2
else
  trap 'rm -rf "$work"' EXIT
fi

# The compiler's <...> search directories, canonical, to turn a path back into an #include name.
mapfile -t search_dirs < <(
  "$cxx" "${flags[@]}" -x c++ -E -v - </dev/null 2>&1 >/dev/null |
    sed -n '/^#include <...> search starts here:/,/^End of search list\./p' |
    sed '1d;$d; s/^ *//; s/ (framework directory)$//' |
    while read -r d; do realpath -m "$d"; done)

# std_headers_of INCLUDE_DIR OUT_TU: writes the std-headers TU of that tree's umbrella to OUT_TU
# and prints the headers' names on one line.
std_headers_of() {
  local inc="$1" out="$2" line depth path parent name d candidate
  local umbrella="$work/umbrella_probe.cpp"
  printf '#include <frugal/frugal.hpp>\n' >"$umbrella"
  # -H prints each header as it is opened, one '.' per nesting level. A header whose includer
  # (the nearest shallower line above it) lies under inc and which itself does not is one the
  # umbrella pulls in from outside frugal.
  if ! "$cxx" "${flags[@]}" -I"$inc" -H -E "$umbrella" -o /dev/null 2>"$work/umbrella.H"; then
    echo "compile_time.sh: $cxx cannot preprocess <frugal/frugal.hpp> of $inc:" >&2
    cat "$work/umbrella.H" >&2
    return 1
  fi
  local -a found=() stack=("$umbrella")
  local -A seen=()
  while IFS= read -r line; do
    [[ "$line" =~ ^(\.+)\ (.*)$ ]] || continue
    depth=${#BASH_REMATCH[1]}
    path="$(realpath -m "${BASH_REMATCH[2]}")"
    stack[depth]="$path"
    parent="${stack[depth - 1]}"
    if [[ "$parent" == "$inc"/* || "$parent" == "$umbrella" ]] && [[ "$path" != "$inc"/* ]]; then
      name=""
      for d in "${search_dirs[@]}"; do
        if [[ "$path" == "$d"/* ]]; then
          candidate="${path#"$d"/}"
          # The longest search directory gives the shortest name (c++/12 before /usr/include).
          if [[ -z "$name" || ${#candidate} -lt ${#name} ]]; then name="$candidate"; fi
        fi
      done
      [[ -n "$name" ]] || name="$path"
      if [[ -z "${seen[$name]+x}" ]]; then
        seen[$name]=1
        found+=("$name")
      fi
    fi
  done < <(sed '/^Multiple include guards may be useful for:/,$d' "$work/umbrella.H")
  {
    echo "// The headers from outside frugal that <frugal/frugal.hpp> includes directly."
    for name in "${found[@]}"; do
      if [[ "$name" == /* ]]; then echo "#include \"$name\""; else echo "#include <$name>"; fi
    done
  } >"$out"
  echo "${found[*]}"
}

# The TUs of every tree: label, include dir and source, in table order. Variant v's rows are
# the ones whose tu_variant is v.
tu_label=() tu_src=() tu_inc=() tu_variant=() std_names=()
for v in "${!dirs[@]}"; do
  inc="${dirs[v]}"
  mkdir -p "$work/v$v"
  names="$(std_headers_of "$inc" "$work/v$v/std_headers.cpp")"
  std_names+=("$names")
  read -r -a arr <<<"$names"
  tu_label+=("std headers (${#arr[@]})"); tu_src+=("$work/v$v/std_headers.cpp"); tu_inc+=("$inc"); tu_variant+=("$v")
  printf '#include <frugal/frugal.hpp>\n' >"$work/v$v/frugal.cpp"
  tu_label+=("frugal/frugal.hpp"); tu_src+=("$work/v$v/frugal.cpp"); tu_inc+=("$inc"); tu_variant+=("$v")
  if [[ "$quick" == 0 ]]; then
    for header in "$inc"/frugal/*.hpp; do
      base="$(basename "$header" .hpp)"
      [[ "$base" == frugal ]] && continue
      printf '#include <frugal/%s.hpp>\n' "$base" >"$work/v$v/$base.cpp"
      tu_label+=("frugal/$base.hpp"); tu_src+=("$work/v$v/$base.cpp"); tu_inc+=("$inc"); tu_variant+=("$v")
    done
  fi
done

echo "compile_time.sh: $("$cxx" --version | head -n 1); flags: ${flags[*]}; ${#tu_src[@]} TUs, min of $runs rounds" >&2
# Which TUs compile at all, and their preprocessed size.
best=() lines=()
for i in "${!tu_src[@]}"; do
  if "$cxx" "${flags[@]}" -I"${tu_inc[i]}" -c "${tu_src[i]}" -o /dev/null 2>"$work/last.err"; then
    best[i]=""
    lines[i]="$("$cxx" "${flags[@]}" -I"${tu_inc[i]}" -E -P "${tu_src[i]}" 2>/dev/null | grep -c '[^[:space:]]' || true)"
  else
    if [[ "$i" == 0 || "${tu_label[i]}" == std\ headers* ]]; then
      echo "compile_time.sh: the std-headers TU does not compile:" >&2
      cat "$work/last.err" >&2
      exit 1
    fi
    best[i]="fail"
    lines[i]=""
  fi
done
# cpu_seconds INDEX: the compiler's user+sys seconds for one compilation of TU INDEX.
cpu_seconds() {
  { TIMEFORMAT='%3U %3S'; time "$cxx" "${flags[@]}" -I"${tu_inc[$1]}" -c "${tu_src[$1]}" -o /dev/null; } 2>&1 >/dev/null |
    tail -n 1 | awk '{ printf "%.3f", $1 + $2 }'
}
for ((r = 1; r <= runs; r++)); do
  for i in "${!tu_src[@]}"; do
    [[ "${best[i]}" == fail ]] && continue
    t="$(cpu_seconds "$i")"
    best[i]="$(awk -v a="$t" -v b="${best[i]}" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }')"
  done
  echo "  round $r/$runs: std headers ${best[0]} s, frugal.hpp ${best[1]} s (minimum so far)" >&2
done

# --- Table --------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }'; }
echo
echo "Compiler: \`$("$cxx" --version | head -n 1)\`, flags \`${flags[*]} -c\`; CPU seconds (user+sys), min of $runs rounds."
echo
# Rows of variant 0, matched by label in the baseline (variant 1) when there is one.
declare -A base_index=()
for i in "${!tu_src[@]}"; do
  [[ "${tu_variant[i]}" == 1 ]] && base_index["${tu_label[i]%% (*}"]="$i"
done
if [[ "${#dirs[@]}" == 2 ]]; then
  base_std=""
  for i in "${!tu_src[@]}"; do [[ "${tu_variant[i]}" == 1 ]] && { base_std="${best[i]}"; break; }; done
  echo "Before: \`${dirs[1]}\`; after: \`${dirs[0]}\`."
  echo
  echo "| TU | before CPU s | before x std | after CPU s | after x std | after / before | before lines | after lines |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
else
  echo "| TU | CPU s | x std headers | preprocessed lines |"
  echo "|---|---:|---:|---:|"
fi
std_s="${best[0]}"
for i in "${!tu_src[@]}"; do
  [[ "${tu_variant[i]}" == 0 ]] || continue
  label="${tu_label[i]}"
  s="${best[i]}"
  if [[ "${#dirs[@]}" == 2 ]]; then
    j="${base_index[${label%% (*}]:-}"
    if [[ -n "$j" && "${best[j]}" != fail ]]; then
      bs="${best[j]}"; br="$(ratio "$bs" "$base_std")"; bl="${lines[j]}"
      [[ "${label%% (*}" == "std headers" ]] && label="std headers (${tu_label[j]//[^0-9]/} before, ${label//[^0-9]/} after)"
    else
      bs="-"; br="-"; bl="-"
    fi
    if [[ "$s" == fail ]]; then
      echo "| \`$label\` | $bs | $br | does not compile | | | $bl | |"
    else
      ab="-"; [[ "$bs" != - ]] && ab="$(ratio "$s" "$bs")"
      echo "| \`$label\` | $bs | $br | $s | $(ratio "$s" "$std_s") | $ab | $bl | ${lines[i]} |"
    fi
  else
    if [[ "$s" == fail ]]; then
      echo "| \`$label\` | does not compile | | |"
    else
      echo "| \`$label\` | $s | $(ratio "$s" "$std_s") | ${lines[i]} |"
    fi
  fi
done
echo
echo "std headers: ${std_names[0]}"
if [[ "${#dirs[@]}" == 2 && "${std_names[1]}" != "${std_names[0]}" ]]; then
  echo "std headers of the baseline: ${std_names[1]}"
fi
