#!/usr/bin/env bash
# Builds Azote's guest kernel from Debian's linux-source-6.1 (downloaded with `apt-get download`, never
# installed), the patches in patches/ and the config fragment beside this script.
#
#   usage: build.sh OUTDIR
#
# Writes OUTDIR/vmlinux (stripped ELF with the PVH note; what Azote boots), OUTDIR/bzImage, OUTDIR/config,
# OUTDIR/System.map, OUTDIR/build.log and, last, OUTDIR/version (`make kernelrelease`).
# Progress goes to stderr as "[kernel] ..." lines. Downloads are kept in $AZOTE_CACHE_DIR/debs
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/azote/debs). Environment: AZOTE_KERNEL_JOBS (default nproc),
# AZOTE_KERNEL_KEEP=1 keeps the build tree (its path is printed).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1
cache=${AZOTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/azote}
debs=$cache/debs
package=linux-source-6.1
t0=$(date +%s)

say() { echo "[kernel] $*" >&2; }
die() { echo "[kernel] error: $*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - t0 ))s"; }

# --- build tools: installed with apt-get when root, else a one-line error naming the command
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need gcc gcc; need make make; need flex flex; need bison bison; need bc bc; need perl perl
need patch patch; need xz xz-utils; need strip binutils; need dpkg-deb dpkg; need apt-get apt
if command -v gcc >/dev/null 2>&1; then
  echo '#include <stdio.h>' | gcc -E -x c - >/dev/null 2>&1 || missing+=(libc6-dev)
  echo '#include <gelf.h>' | gcc -E -x c - >/dev/null 2>&1 || missing+=(libelf-dev)
else
  missing+=(libc6-dev libelf-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing build tools; run: sudo apt-get install -y ${missing[*]}"
  say "installing build tools: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
    die "apt-get install ${missing[*]} failed"
fi

# --- the source package, downloaded once
mkdir -p "$debs"
latest_deb() { find "$debs" -maxdepth 1 -name "${package}_*.deb" -printf '%f\n' | sort -V | tail -n 1; }
deb=$(latest_deb)
if [ -z "$deb" ]; then
  say "downloading $package with apt-get (about 140 MB)"
  if ! (cd "$debs" && apt-get download -q "$package" >&2); then
    say "apt-get download failed; refreshing the package lists (apt-get update)"
    { apt-get update -q >&2 && (cd "$debs" && apt-get download -q "$package" >&2); } ||
      die "apt-get download $package failed: check that a Debian bookworm archive is in the apt sources and reachable"
  fi
  deb=$(latest_deb)
  [ -n "$deb" ] || die "apt-get download $package left no .deb in $debs"
fi
deb=$debs/$deb

# --- a fresh tree in a temporary directory
work=$(mktemp -d "${TMPDIR:-/tmp}/azote-kernel.XXXXXX")
if [ "${AZOTE_KERNEL_KEEP:-0}" = 1 ]; then
  say "keeping the build tree $work"
else
  trap 'rm -rf "$work"' EXIT
fi
say "extracting $(basename "$deb")"
dpkg-deb -x "$deb" "$work/deb"
tarball=$(find "$work/deb" -name "$package.tar.xz" | head -n 1)
[ -n "$tarball" ] || die "$(basename "$deb") holds no $package.tar.xz"
tar -xJf "$tarball" -C "$work"
rm -rf "$work/deb"
src=$work/$package
[ -d "$src" ] || die "$package.tar.xz did not unpack to $package/"

for p in "$here"/patches/*.patch; do
  [ -e "$p" ] || continue
  say "applying $(basename "$p")"
  patch -d "$src" -p1 --forward --fuzz=0 --no-backup-if-mismatch --quiet < "$p" ||
    die "patch $(basename "$p") does not apply to $(basename "$deb")"
done

# --- configuration: allnoconfig plus our fragment, then check that every line of the fragment holds
mkdir -p "$out"
log=$out/build.log
: > "$log"
say "configuring (make allnoconfig KCONFIG_ALLCONFIG=guest/kernel/config)"
make -C "$src" allnoconfig KCONFIG_ALLCONFIG="$here/config" >>"$log" 2>&1 ||
  { tail -n 30 "$log" >&2; die "make allnoconfig failed (log: $log)"; }
grep -i 'warning' "$log" | sed 's/^/[kernel]   kconfig: /' >&2 || true

bad=()
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*)
      grep -qxF -- "$line" "$src/.config" || {
        got=$(grep -E "^(# )?${line%%=*}[= ]" "$src/.config" || true)
        bad+=("$line (got: ${got:-absent})")
      } ;;
    "# CONFIG_"*" is not set")
      opt=${line#\# }; opt=${opt%% *}
      ! grep -q "^$opt=" "$src/.config" || bad+=("$line (got: $(grep "^$opt=" "$src/.config"))") ;;
  esac
done < "$here/config"
if [ ${#bad[@]} -gt 0 ]; then
  say "these lines of guest/kernel/config did not hold after make allnoconfig (a dependency is missing):"
  printf '[kernel]   %s\n' "${bad[@]}" >&2
  die "the configuration does not match guest/kernel/config"
fi
say "configuration checked: $(grep -c '=y$' "$src/.config") options on"

# --- the build, in the background, with a progress line every 30 s
jobs=${AZOTE_KERNEL_JOBS:-$(nproc)}
say "building vmlinux and bzImage with $jobs jobs (about ten minutes on two cores; log: $log)"
tb=$(date +%s)
make -C "$src" -j"$jobs" vmlinux bzImage >>"$log" 2>&1 &
build=$!
trap 'kill "$build" 2>/dev/null || true' INT TERM
while kill -0 "$build" 2>/dev/null; do
  for _ in $(seq 30); do kill -0 "$build" 2>/dev/null || break; sleep 1; done
  kill -0 "$build" 2>/dev/null || break
  objs=$(grep -cE '^  (CC|AS|AR|LD)[ ]' "$log" || true)
  say "  $(( $(date +%s) - tb ))s: $objs objects built"
done
if ! wait "$build"; then
  echo "[kernel] --- last lines of $log:" >&2
  grep -v '^  [A-Z]' "$log" | tail -n 40 >&2 || tail -n 40 "$log" >&2
  die "the kernel build failed"
fi

strip -o "$out/vmlinux" "$src/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
cp "$src/.config" "$out/config"
cp "$src/System.map" "$out/System.map"
make -C "$src" -s kernelrelease > "$out/version.tmp"
mv "$out/version.tmp" "$out/version"
say "built $(cat "$out/version") in $(( $(date +%s) - tb ))s of compilation, $(elapsed) in all ($(du -h "$out/vmlinux" | cut -f1) vmlinux)"
