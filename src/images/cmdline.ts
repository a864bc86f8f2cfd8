// The kernel command line for Azote's own guest kernel.
import { readFileSync } from 'node:fs';

export interface CmdlineOptions {
  /** The host runs the nested paravirtual KVM (kvm_pvm): add the workarounds guest/kernel/README.md explains. */
  readonly nestedPvm: boolean;
  /** Keep the kernel's own boot messages off the console (command mode). */
  readonly quiet: boolean;
}

/** Our kernel's HZ (guest/kernel/config): loops_per_jiffy is given so the guest skips delay-loop calibration. */
const GUEST_HZ = 100;

function hostCpuMHz(): number | undefined {
  try {
    const m = /cpu MHz\s*:\s*([\d.]+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function guestCmdline(o: CmdlineOptions): string {
  const args = ['console=ttyS0', 'reboot=k', 'panic=-1', 'tsc=reliable', 'no_timer_check'];
  const mhz = hostCpuMHz();
  if (mhz) args.push(`lpj=${Math.round((mhz * 1e6) / GUEST_HZ)}`);
  if (o.quiet) args.push('quiet');
  if (o.nestedPvm) {
    // Under kvm_pvm the guest sees the host's feature bits (leaves 1 and 7) whatever KVM_SET_CPUID2 says: the features
    // it cannot run are turned off in the guest instead.
    // noxsave is read early by the CPU setup code: Linux calls it "unknown" and passes it to init, yet it is needed.
    // The guest's TSC is the host's here (setting MSR_IA32_TSC on a restored vCPU does not move it): on the TSC
    // clocksource, a guest continued from a snapshot would see every second since the snapshot pass at once (RCU
    // stall warnings, timers firing together). kvm-clock, which a restore sets back to its saved value, stands still.
    args.push('clocksource=kvm-clock');
    args.push('noxsave', 'mitigations=off', 'rodata=off',
      'clearcpuid=308,141,151,158,306,288,145,298,137,147,148,129,153,156');
  }
  return args.join(' ');
}
