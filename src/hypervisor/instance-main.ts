// The hypervisor process of one instance, started by the controller (`instance-main.js --instance ID`, the id for
// people reading the process list): it waits for its launch message on the IPC channel, runs the VM, reports what
// happens, and ends with the VM. If the controller goes away, the VM is stopped: nothing else may command it.
import { createLogger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import { readFileSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import { MicroVm } from './vm.js';
import type { ControllerMessage, HypervisorMessage, InstanceLaunch } from './instance-protocol.js';

const log = createLogger('hypervisor');

// No privilege can be gained through exec from here on, and the process is not dumpable: no core dump, and no
// ptrace or /proc access to its memory by anyone without CAP_SYS_PTRACE.
libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
libc.prctl(libc.PR_SET_DUMPABLE, 0);

function say(m: HypervisorMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) {
      resolve();
      return;
    }
    process.send(m, undefined, {}, () => resolve());
  });
}

async function launch(spec: InstanceLaunch): Promise<void> {
  let vm: MicroVm;
  try {
    vm = new MicroVm({
      kernel: readFileSync(spec.kernel), cmdline: spec.cmdline, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, log,
      disks: spec.disks, rng: true, volumes: spec.volumes ?? [], ...(spec.netCard ? { netCard: spec.netCard } : {}),
      output: (bytes) => process.stdout.write(bytes),
      onMarker: (v) => { if (v === 1) void say({ kind: 'booted' }); },
    });
  } catch (e) {
    await say({ kind: 'ended', end: 'failed', detail: errorMessage(e) });
    process.exit(1);
  }
  await say({ kind: 'created', privateIp: vm.network?.ip, mac: vm.network?.mac });
  process.on('message', (m: ControllerMessage) => { if (m.kind === 'stop') vm.stop(); });
  process.on('disconnect', () => vm.stop());
  const end = await vm.run();
  await say({ kind: 'ended', end: end.kind, detail: end.kind === 'crashed' ? end.reason : end.kind === 'exit-status' ? String(end.status) : '' });
  process.exit(0);
}

// Before the launch, a controller that goes away simply ends the process.
const early = (): never => process.exit(0);
process.once('disconnect', early);
process.once('message', (m: ControllerMessage) => {
  process.off('disconnect', early);
  if (m.kind !== 'launch') {
    log.error('the first message was not a launch', { kind: m.kind });
    process.exit(2);
  }
  void launch(m);
});
