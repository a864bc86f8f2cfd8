#!/usr/bin/env bash
# Builds Azote's guest kernel: Debian's linux-source-6.1 (downloaded with apt-get, never installed), our patches,
# and the config fragment beside this script. Usage: build.sh OUTDIR
# Writes OUTDIR/vmlinux (stripped ELF with a PVH note), OUTDIR/bzImage, OUTDIR/config, OUTDIR/version.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
cache=${AZOTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/azote}
debs=$cache/debs
say() { echo "[kernel] $*" >&2; }
die() { echo "[kernel] error: $*" >&2; exit 1; }

# Build tools. As root they are installed; otherwise the error names the command to run.
packages=()
for pair in gcc:gcc make:make flex:flex bison:bison bc:bc perl:perl patch:patch xz:xz-utils dpkg-deb:dpkg; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || packages+=("${pair#*:}")
done
[ -f /usr/include/libelf.h ] || packages+=(libelf-dev)
[ -f /usr/include/openssl/opensslv.h ] || packages+=(libssl-dev)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    say "installing build tools: ${packages[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" >&2; }
  else
    die "missing build tools; run: sudo apt-get install ${packages[*]}"
  fi
fi

mkdir -p "$debs"
deb=$(ls "$debs"/linux-source-6.1_*.deb 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$deb" ]; then
  say "downloading Debian's linux-source-6.1 (about 140 MB)"
  (cd "$debs" && { apt-get download linux-source-6.1 >&2 || { apt-get update -q >&2 && apt-get download linux-source-6.1 >&2; }; }) ||
    die "apt-get download linux-source-6.1 failed: check that the Debian archive is reachable"
  deb=$(ls "$debs"/linux-source-6.1_*.deb | sort | tail -n 1)
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/azote-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "extracting $(basename "$deb")"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards '*/linux-source-6.1.tar.xz'
tar -xJf "$(find "$work" -name linux-source-6.1.tar.xz | head -n 1)" -C "$work"
src=$work/linux-source-6.1
[ -d "$src" ] || die "the package did not contain linux-source-6.1/"

for p in "$here"/patches/*.patch; do
  say "applying $(basename "$p")"
  patch -d "$src" -p1 --quiet --forward < "$p" || die "patch $(basename "$p") does not apply"
done

say "configuring (allnoconfig + guest/kernel/config)"
make -C "$src" -s allnoconfig KCONFIG_ALLCONFIG="$here/config" >"$work/config.log" 2>&1 || { tail -n 20 "$work/config.log" >&2; die "configuration failed"; }
# Kconfig drops an option silently when a dependency is missing: every line of the fragment must hold.
bad=0
while IFS= read -r line; do
  case "$line" in
    CONFIG_*=*) grep -qxF "$line" "$src/.config" || { say "not applied: $line"; bad=1; } ;;
    "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}; ! grep -q "^$opt=" "$src/.config" || { say "still set: $opt"; bad=1; } ;;
  esac
done < "$here/config"
[ "$bad" -eq 0 ] || die "the configuration does not match guest/kernel/config"

jobs=$(nproc)
say "building vmlinux and bzImage with $jobs jobs (about ten minutes on two cores)"
start=$(date +%s)
make -C "$src" -j"$jobs" vmlinux bzImage >"$work/build.log" 2>&1 &
build=$!
while kill -0 "$build" 2>/dev/null; do
  sleep 30
  kill -0 "$build" 2>/dev/null || break
  say "  $(( $(date +%s) - start ))s: $(find "$src" -name '*.o' | wc -l) objects built"
done
if ! wait "$build"; then
  tail -n 30 "$work/build.log" >&2
  die "kernel build failed"
fi

mkdir -p "$out"
strip --strip-debug -o "$out/vmlinux" "$src/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
cp "$src/.config" "$out/config"
make -C "$src" -s kernelrelease > "$out/version"
say "built $(cat "$out/version") in $(( $(date +%s) - start ))s"
