// The hypervisor process of one instance, started by the controller in its jail (`instance-main.js --instance ID`,
// the id for people reading the process list). It opens nothing: it is given /dev/kvm, the kernel and the disks as
// inherited descriptors and its card connections on its channel (descriptor 3, protocols/instance.ts), runs the VM,
// reports what happens, and ends with the VM. If the controller goes away, the VM is stopped: nothing else may
// command it. Its channel closing says so, and the kernel kills it too should its event loop be stuck (below).
import { closeSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { createLogger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { restrictProcess } from '../sys/seccomp.js';
import { HYPERVISOR_SECCOMP } from './seccomp-profile.js';
import { HandedCardLink } from './card-link.js';
import { MicroVm } from './vm.js';
import { Channel } from '../protocols/channel.js';
import { controllerMessage, INHERITED_FDS, MAX_DETAIL, type ControllerMessage, type HypervisorMessage, type InstanceLaunch } from '../protocols/instance.js';

const log = createLogger('hypervisor');

// No privilege can be gained through exec from here on, and the process is not dumpable: no core dump, and no
// ptrace or /proc access to its memory by anyone without CAP_SYS_PTRACE. Then the kernel keeps only the system calls
// a hypervisor was seen to make (seccomp-profile.ts): never a socket, a connection, a program, a mount or a namespace;
// its vCPU and I/O threads narrow that further to their own lists once they are set up.
// Its parent is unshare, which kills it when the controller goes (--kill-child); the parent-death signal is set here
// too, after setpriv changed the uid (a uid change clears it), for a jail started without a pid namespace.
libc.prctl(libc.PR_SET_PDEATHSIG, constants.signals.SIGKILL);
libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
libc.prctl(libc.PR_SET_DUMPABLE, 0);
restrictProcess(HYPERVISOR_SECCOMP.process);

/** What the controller is told; a channel that is gone (the controller with it) takes nothing, and its end stops the VM. */
function say(m: HypervisorMessage): void {
  channel.send(m);
}

const cards = new Map<string, HandedCardLink>();
function card(name: string): HandedCardLink {
  let link = cards.get(name);
  if (!link) {
    link = new HandedCardLink(name, () => say({ kind: 'connect-card', card: name }));
    cards.set(name, link);
  }
  return link;
}

let vm: MicroVm | undefined;
let launching = false;

async function launch(spec: InstanceLaunch): Promise<void> {
  let created: MicroVm;
  try {
    const kernel = readFileSync(spec.kernelFd);
    closeSync(spec.kernelFd);
    created = new MicroVm({
      kernel, cmdline: spec.cmdline, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, log, kvmFd: spec.kvmFd, flavour: spec.flavour,
      disks: spec.disks.map((d) => ({ path: d.name, fd: d.fd, readOnly: d.readOnly })), rng: true, confineThreads: true,
      volumes: (spec.volumes ?? []).map(card), ...(spec.netCard ? { netCard: card(spec.netCard) } : {}),
      output: (bytes) => process.stdout.write(bytes),
      onMarker: (v) => { if (v === 1) say({ kind: 'booted' }); },
    });
  } catch (e) {
    say({ kind: 'ended', end: 'failed', detail: errorMessage(e).slice(0, MAX_DETAIL) });
    process.exit(1);
  }
  vm = created;
  say({ kind: 'created', privateIp: created.network?.ip, mac: created.network?.mac });
  const end = await created.run();
  say({ kind: 'ended', end: end.kind, detail: (end.kind === 'crashed' ? end.reason : end.kind === 'exit-status' ? String(end.status) : '').slice(0, MAX_DETAIL) });
  process.exit(0);
}

function receive(m: ControllerMessage, fds: number[]): void {
  switch (m.kind) {
    case 'card':
      // The parser let it through with exactly one descriptor: the connection.
      for (const fd of fds) card(m.card).give(fd);
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
      if (launching) {
        log.error('a second launch was refused');
        return;
      }
      launching = true;
      void launch(m);
  }
}

// The controller going away (or breaking the protocol) stops the VM; before the launch, it simply ends the process.
const channel = new Channel<ControllerMessage, HypervisorMessage>(INHERITED_FDS.channel, controllerMessage, {
  message: receive,
  end: (error) => {
    if (error) log.error('the controller\'s channel broke', { code: error.code, why: error.message });
    if (vm) vm.stop();
    else process.exit(0);
  },
}, 'the controller');
