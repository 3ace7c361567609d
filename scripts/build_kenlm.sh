#!/usr/bin/env bash
# Find or build KenLM's `lmplz` and `build_binary` into tools/kenlm/bin (idempotent).
#
# The kenlm source archive on PyPI carries the full C++ tree (lm/builder/lmplz_main.cc included);
# only the two programs the project needs are compiled. Boost, zlib, bz2 and lzma headers come
# from Debian packages, installed with apt-get when missing and we are root.
#
# Environment: KENLM_PREFIX (default <repo>/tools/kenlm), JOBS (default 2), PYTHON (default the
# repo's .venv python, else python3), KENLM_FORCE=1 to rebuild even when the programs exist.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=${KENLM_PREFIX:-$ROOT/tools/kenlm}
BIN=$PREFIX/bin
JOBS=${JOBS:-2}
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

say() { echo "build_kenlm: $*" >&2; }

if [[ "${KENLM_FORCE:-0}" != 1 && -x "$BIN/lmplz" && -x "$BIN/build_binary" ]]; then
  say "found $BIN/lmplz and $BIN/build_binary; nothing to do"
  exit 0
fi
# Already installed system-wide: link them so the library finds one fixed place.
if [[ "${KENLM_FORCE:-0}" != 1 ]] && command -v lmplz >/dev/null && command -v build_binary >/dev/null; then
  mkdir -p "$BIN"
  ln -sf "$(command -v lmplz)" "$BIN/lmplz"
  ln -sf "$(command -v build_binary)" "$BIN/build_binary"
  say "linked lmplz and build_binary from PATH into $BIN"
  exit 0
fi

start=$(date +%s)

# 1. Build dependencies (Debian packages).
DEBS=(cmake g++ make libboost-program-options-dev libboost-system-dev libboost-thread-dev
      libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if (( ${#missing[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]}; install them as root (apt-get install -y ${missing[*]}) and rerun"
    exit 1
  fi
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Source: the kenlm sdist from PyPI (no build isolation, so pip does not compile cmake itself).
SRC_ROOT=$PREFIX/src
mkdir -p "$SRC_ROOT"
archive=$(ls "$SRC_ROOT"/kenlm-*.tar.gz 2>/dev/null | head -n1 || true)
if [[ -z "$archive" ]]; then
  say "downloading the kenlm source archive from PyPI"
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation kenlm -d "$SRC_ROOT"
  archive=$(ls "$SRC_ROOT"/kenlm-*.tar.gz | head -n1)
fi
srcdir=${archive%.tar.gz}
[[ -d "$srcdir" ]] || tar -xzf "$archive" -C "$SRC_ROOT"
if [[ ! -f "$srcdir/lm/builder/lmplz_main.cc" || ! -f "$srcdir/lm/build_binary_main.cc" ]]; then
  say "$archive does not contain the lmplz/build_binary sources (lm/builder/lmplz_main.cc); cannot build"
  exit 1
fi

# 3. Compile only the two programs.
say "compiling lmplz and build_binary with $JOBS jobs"
log=$srcdir/build.log
# Compiler output (KenLM triggers many deprecation warnings) goes to the log; shown on failure.
if ! { cmake -S "$srcdir" -B "$srcdir/build" -DCMAKE_BUILD_TYPE=Release -DCOMPILE_TESTS=OFF \
         -DENABLE_PYTHON=OFF -DENABLE_INTERPOLATE=OFF &&
       cmake --build "$srcdir/build" --target lmplz build_binary -j "$JOBS"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  say "build failed; full log in $log"
  exit 1
fi

mkdir -p "$BIN"
install -m 755 "$srcdir/build/bin/lmplz" "$srcdir/build/bin/build_binary" "$BIN/"
say "built $BIN/lmplz and $BIN/build_binary in $(( $(date +%s) - start )) s"
