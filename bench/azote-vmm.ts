// A bare Azote VMM for the boot benchmark: MicroVm straight from the library, without the CLI's command parsing and
// without an initramfs (test guests have no use for one), so it runs the same guest as QEMU does.
//   node dist/bench/azote-vmm.js KERNEL CMDLINE VCPUS MEM_MIB
// Guest serial output goes to stdout; the exit status is the guest's (port 0x510), 130 when stopped by
// SIGTERM/SIGINT, 125 when the VM reset or crashed.
import { readFileSync } from 'node:fs';
import { createLogger } from '../src/base/log.js';
import { MicroVm } from '../src/hypervisor/vm.js';

const [kernel, cmdline, vcpus, mem] = process.argv.slice(2);
if (kernel === undefined || cmdline === undefined || vcpus === undefined || mem === undefined) {
  process.stderr.write('usage: azote-vmm KERNEL CMDLINE VCPUS MEM_MIB\n');
  process.exit(2);
}

const vm = new MicroVm({
  kernel: readFileSync(kernel), cmdline, vcpus: Number(vcpus), memoryMiB: Number(mem), log: createLogger('bench-vmm'),
  output: (bytes) => process.stdout.write(bytes),
});
const stop = (): void => vm.stop();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
const end = await vm.run();
switch (end.kind) {
  case 'exit-status':
    process.exitCode = end.status;
    break;
  case 'stopped':
    process.exitCode = 130;
    break;
  default:
    process.stderr.write(`azote-vmm: the VM ended: ${JSON.stringify(end)}\n`);
    process.exitCode = 125;
}
