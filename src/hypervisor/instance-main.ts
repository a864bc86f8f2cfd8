// The hypervisor process of one instance, started by the controller in its jail (`instance-main.js --instance ID`,
// the id for people reading the process list). It opens nothing: it is given /dev/kvm, the kernel and the disks as
// inherited descriptors and its card connections on the IPC channel (instance-protocol.ts), runs the VM, reports
// what happens, and ends with the VM. If the controller goes away, the VM is stopped: nothing else may command it.
// Its channel closing says so, and the kernel kills it too should its event loop be stuck: its jail asks for a
// parent-death signal (jail.ts), which the uid change in the jail clears where no process forks on the way (a root
// controller's jail execs down to this process): then it is asked for again here.
import { closeSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import { createLogger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { denyNetworkAndExec } from '../sys/seccomp.js';
import { HandedCardLink } from './card-link.js';
import { MicroVm } from './vm.js';
import type { ControllerMessage, HypervisorMessage, InstanceLaunch } from './instance-protocol.js';

const log = createLogger('hypervisor');

// No privilege can be gained through exec from here on, and the process is not dumpable: no core dump, and no
// ptrace or /proc access to its memory by anyone without CAP_SYS_PTRACE. Then the kernel takes away what a passive
// hypervisor never does: open a socket, connect, listen, accept, start a program.
// Its parent is unshare, which kills it when the controller goes (--kill-child); the parent-death signal is set here
// too, after setpriv changed the uid (a uid change clears it), for a jail started without a pid namespace.
libc.prctl(libc.PR_SET_PDEATHSIG, constants.signals.SIGKILL);
libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
libc.prctl(libc.PR_SET_DUMPABLE, 0);
denyNetworkAndExec();

function say(m: HypervisorMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) {
      resolve();
      return;
    }
    process.send(m, undefined, {}, () => resolve());
  });
}

const cards = new Map<string, HandedCardLink>();
function card(name: string): HandedCardLink {
  let link = cards.get(name);
  if (!link) {
    link = new HandedCardLink(name, () => void say({ kind: 'connect-card', card: name }));
    cards.set(name, link);
  }
  return link;
}

/** The descriptor of a socket handed over on the channel, as one of ours (Node's copy is closed). */
function takeSocket(handle: Socket): number {
  const fd = (handle as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd === undefined || fd < 0) throw new Error('a card connection came without a descriptor');
  const own = libc.dup(fd);
  handle.destroy();
  return own;
}

let vm: MicroVm | undefined;

async function launch(spec: InstanceLaunch): Promise<void> {
  let created: MicroVm;
  try {
    const kernel = readFileSync(spec.kernelFd);
    closeSync(spec.kernelFd);
    created = new MicroVm({
      kernel, cmdline: spec.cmdline, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, log, kvmFd: spec.kvmFd, flavour: spec.flavour,
      disks: spec.disks.map((d) => ({ path: d.name, fd: d.fd, readOnly: d.readOnly })), rng: true,
      volumes: (spec.volumes ?? []).map(card), ...(spec.netCard ? { netCard: card(spec.netCard) } : {}),
      output: (bytes) => process.stdout.write(bytes),
      onMarker: (v) => { if (v === 1) void say({ kind: 'booted' }); },
    });
  } catch (e) {
    await say({ kind: 'ended', end: 'failed', detail: errorMessage(e) });
    process.exit(1);
  }
  vm = created;
  await say({ kind: 'created', privateIp: created.network?.ip, mac: created.network?.mac });
  process.on('disconnect', () => created.stop());
  const end = await created.run();
  await say({ kind: 'ended', end: end.kind, detail: end.kind === 'crashed' ? end.reason : end.kind === 'exit-status' ? String(end.status) : '' });
  process.exit(0);
}

// Before the launch, a controller that goes away simply ends the process.
const early = (): never => process.exit(0);
process.once('disconnect', early);
process.on('message', (m: ControllerMessage, handle?: Socket) => {
  switch (m.kind) {
    case 'card':
      if (!handle) {
        log.error('a card message came without its connection', { card: m.card });
        return;
      }
      card(m.card).give(takeSocket(handle));
      return;
    case 'card-unavailable':
      card(m.card).refused();
      return;
    case 'shutdown':
      if (vm) vm.requestShutdown();
      else process.exit(0);
      return;
    case 'stop':
      if (vm) vm.stop();
      else process.exit(0);
      return;
    case 'launch':
      if (vm) {
        log.error('a second launch was refused');
        return;
      }
      process.off('disconnect', early);
      void launch(m);
  }
});
