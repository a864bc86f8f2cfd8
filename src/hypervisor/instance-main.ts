// The hypervisor process of one instance, started by the controller: it waits for its launch message on the IPC
// channel, runs the VM, reports what happens, and ends with the VM. If the controller goes away, the VM is stopped:
// nothing else may command it.
import { createLogger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import { readFileSync } from 'node:fs';
import { MicroVm } from './vm.js';
import type { ControllerMessage, HypervisorMessage, InstanceLaunch } from './instance-protocol.js';

const log = createLogger('hypervisor');

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
