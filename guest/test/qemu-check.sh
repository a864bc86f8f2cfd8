#!/bin/sh
# Boots each test guest under QEMU (TCG by default; ACCEL=kvm to try KVM) and checks its output and exit status.
# Uses the QEMU build (build/qemu, exit-status port 0xf4: QEMU's fw_cfg sits on 0x510/0x511), so run
# `make qemu` first (or `make check-qemu`). QEMU's isa-debug-exit makes QEMU exit with (status << 1) | 1.
set -u
cd "$(dirname "$0")"
DIR=${OUT:-build}/qemu
QEMU=${QEMU:-qemu-system-x86_64}
ACCEL=${ACCEL:-tcg}
fails=0

# run NAME MACHINE SMP CMDLINE WANT_STATUS PATTERN
# WANT_STATUS is the guest's status, or "shutdown" for a VM that must end without using the port.
run() {
	name=$1 machine=$2 smp=$3 cmdline=$4 want=$5 pattern=$6
	out=$(timeout 60 "$QEMU" -M "$machine" -accel "$ACCEL" -m 64 -smp "$smp" -display none -serial stdio \
		-monitor none -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=4 \
		-kernel "$DIR/$name.elf" -append "$cmdline" 2>/dev/null)
	rc=$?
	if [ "$want" = shutdown ]; then
		wantrc=0
	else
		wantrc=$(((want << 1) | 1))
	fi
	if [ "$rc" -eq "$wantrc" ] && printf '%s' "$out" | grep -q -- "$pattern"; then
		echo "ok   $name ($machine, $smp cpus, '$cmdline'): qemu status $rc"
	else
		echo "FAIL $name ($machine, $smp cpus, '$cmdline'): qemu status $rc, wanted $wantrc and /$pattern/"
		printf '%s\n' "$out" | sed 's/^/     | /'
		fails=$((fails + 1))
	fi
}

MICROVM=microvm,rtc=on   # microvm leaves the RTC out under KVM unless asked
run hello  $MICROVM 1 "greeting=yes" 0 "cmdline: greeting=yes"
run hello  $MICROVM 1 "" 0 "memmap: [0-9]* entries, 63 MiB RAM"
run exit   $MICROVM 1 "" 3 "exit: status 3"
run exit   $MICROVM 1 "status=42" 42 "exit: status 42"
run exit   $MICROVM 1 "width=1 status=7" 7 "1-byte write"
run exit   $MICROVM 1 "100" 100 "exit: status 100"  # QEMU reports (status << 1) | 1 in 8 bits
run cmos   $MICROVM 1 "" 0 "cmos: sane"
# QEMU returns 0 (not all ones) for unbacked guest-physical memory, so badio's first MMIO check (13) fails
# there; every port check before it must pass.
run badio  $MICROVM 1 "" 14 "badio: FAILED at check 13"
run triple $MICROVM 1 "" shutdown "triple: empty IDT, then ud2"
# microvm's firmware writes an MP table without processors: smp counts the ACPI MADT's there.
for n in 1 2 4; do
	run smp $MICROVM $n "" $n "smp: $n cpus up"
done
run smp $MICROVM 4 "broadcast" 4 "smp: 4 cpus up"
# pc: SeaBIOS's MP table lists one processor per socket, so one core per socket.
for n in 1 2 4; do
	run smp pc "$n,sockets=$n,cores=1" "" $n "mptable: $n cpus"
done

if [ "$fails" -ne 0 ]; then
	echo "$fails failed"
	exit 1
fi
echo "all passed"
