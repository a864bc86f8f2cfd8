// The hypervisor process of one VM, started in its jail by the controller (`instance-main.js --instance ID`, the id
// for people reading the process list) or by `azote run`. It opens nothing: it is given /dev/kvm, the kernel, the
// initramfs, the disks, a TAP and a vsock's listening socket as inherited descriptors and its card connections on its
// channel (descriptor 3, protocols/instance.ts), runs the VM, reports what happens, and ends with the VM. The guest's
// console goes to stdout and its input comes from stdin. If its parent goes away, the VM is stopped: nothing else
// may command it. Its channel closing says so, and the kernel kills it too should its event loop be stuck (below).
import { closeSync, fstatSync, readSync } from 'node:fs';
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { createLogger } from '../base/log.js';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { restrictProcess } from '../sys/seccomp.js';
import { hypervisorAllowlists } from './seccomp-roles.js';
import { HandedCardLink } from './card-link.js';
import { MicroVm } from './vm.js';
import { MARKER_RUNNING, MARKER_STARTED, MARKER_WAITING_FOR_REQUEST } from './devices/azote-ports.js';
import { Channel } from '../protocols/channel.js';
import { controllerMessage, INHERITED_FDS, MAX_DETAIL, type ControllerMessage, type HypervisorMessage, type InstanceLaunch } from '../protocols/instance.js';

const log = createLogger('hypervisor');
// --vsock, from the parent that hands it a vsock's listening socket: the one call of the filter's list it then needs.
const { values: args } = parseArgs({ options: { instance: { type: 'string' }, vsock: { type: 'boolean', default: false } } });

// No privilege can be gained through exec from here on, and the process is not dumpable: no core dump, and no
// ptrace or /proc access to its memory by anyone without CAP_SYS_PTRACE. Then the kernel keeps only the system calls
// a hypervisor was seen to make (seccomp-roles.ts): never a socket, a connection, a program, a mount or a namespace,
// and no accept but a vsock's host connections; its vCPU and I/O threads narrow that further once set up.
// Its parent is unshare, which kills it when the controller goes (--kill-child); the parent-death signal is set here
// too, after setpriv changed the uid (a uid change clears it), for a jail started without a pid namespace.
libc.prctl(libc.PR_SET_PDEATHSIG, constants.signals.SIGKILL);
libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1);
libc.prctl(libc.PR_SET_DUMPABLE, 0);
const allowlists = hypervisorAllowlists({ vsock: args.vsock });
// Console input is read from stdin: its stream is made before the filter, as restrictProcess makes stdout's.
void process.stdin;
restrictProcess(allowlists.process);

/** What the parent is told; a channel that is gone (the parent with it) takes nothing, and its end stops the VM. */
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

/** The guest's vsock connections to the host asked of the parent, by port, answered in order. */
const vsockAsks = new Map<number, Array<(fd: number | undefined) => void>>();
function connectVsock(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    if (!channel.open) {
      resolve(undefined);
      return;
    }
    vsockAsks.set(port, [...vsockAsks.get(port) ?? [], resolve]);
    say({ kind: 'connect-vsock', port });
  });
}
function vsockAnswer(port: number, fd: number | undefined): void {
  const resolve = vsockAsks.get(port)?.shift();
  if (resolve) resolve(fd);
  else if (fd !== undefined) libc.close(fd); // nothing was asked: the parent is confused, the socket unused
}

/** Guest console input: stdin, read while the guest takes it (an instance's stdin is empty). */
function attachInput(vm: MicroVm): void {
  process.stdin.on('data', (b: Buffer) => {
    if (!vm.input(b)) process.stdin.pause();
  });
}

let vm: MicroVm | undefined;
let launching = false;

/** Reads an inherited file whole, from its start whatever its offset (the parent may have written it), and closes it. */
function readInherited(fd: number): Buffer {
  try {
    const bytes = Buffer.alloc(fstatSync(fd).size);
    for (let done = 0; done < bytes.length;) {
      const n = readSync(fd, bytes, done, bytes.length - done, done);
      if (n === 0) return bytes.subarray(0, done);
      done += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** A `save` launch's snapshot has begun (it is taken once). */
let saveStarted = false;

/** A `save` launch: the snapshot is taken where init waits for its run request, then the request is given. */
async function saveThenGo(created: MicroVm, fd: number, request: Uint8Array): Promise<void> {
  const started = performance.now();
  try {
    const written = await created.snapshot(fd);
    say({ kind: 'snapshot-saved', bytes: written.bytes, pages: written.pages, ms: performance.now() - started });
  } catch (e) {
    say({ kind: 'snapshot-failed', detail: errorMessage(e).slice(0, MAX_DETAIL) });
  } finally {
    closeSync(fd);
  }
  created.giveRunRequest(request);
}

let hibernated = false;

/** Saves the VM into `fd` and ends it; a VM that cannot be saved now goes on, and the parent is told why. */
async function hibernate(fd: number): Promise<void> {
  try {
    if (!vm) throw new Error('the VM is not launched yet');
    const started = performance.now();
    const written = await vm.snapshot(fd, { stop: true });
    hibernated = true;
    say({ kind: 'snapshot-saved', bytes: written.bytes, pages: written.pages, ms: performance.now() - started });
  } catch (e) {
    say({ kind: 'snapshot-failed', detail: errorMessage(e).slice(0, MAX_DETAIL) });
  } finally {
    closeSync(fd);
  }
}

async function launch(spec: InstanceLaunch): Promise<void> {
  let created: MicroVm;
  const snapshot = spec.snapshot;
  const request = spec.runRequest === undefined ? undefined : Buffer.from(spec.runRequest, 'base64');
  try {
    // A VM continuing a snapshot has its kernel in the snapshot's memory: the kernel fd is not read.
    const kernel = snapshot?.mode === 'restore' ? new Uint8Array(0) : readInherited(spec.kernelFd);
    const initrd = spec.initrdFd === undefined || snapshot?.mode === 'restore' ? undefined : readInherited(spec.initrdFd);
    const tap = spec.tap ? { ...spec.tap, mac: Uint8Array.from(spec.tap.mac.split(':').map((h) => parseInt(h, 16))) } : undefined;
    created = new MicroVm({
      kernel, initrd, cmdline: spec.cmdline, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, memory: spec.memory, log, kvmFd: spec.kvmFd, flavour: spec.flavour,
      disks: spec.disks.map((d) => ({ path: d.name, fd: d.fd, readOnly: d.readOnly })), rng: spec.rng, confineIo: allowlists.io,
      volumes: (spec.volumes ?? []).map(card), ...(spec.netCard ? { netCard: card(spec.netCard) } : {}),
      ...(tap ? { tap } : {}), ...(spec.vsockFd === undefined ? {} : { vsock: { listenFd: spec.vsockFd, connect: connectVsock } }),
      output: (bytes) => process.stdout.write(bytes),
      inputReady: () => process.stdin.resume(),
      onMarker: (v) => {
        // What the parent calls booted: init started, or, continuing a snapshot, runs again.
        if (v === (snapshot?.mode === 'restore' ? MARKER_RUNNING : MARKER_STARTED)) {
          log.debug('the guest runs', { msSinceStart: Math.round(performance.now()) });
          say({ kind: 'booted' });
        }
        // Once: the fd is closed after the save, and a guest may write the marker as often as it likes.
        else if (v === MARKER_WAITING_FOR_REQUEST && snapshot?.mode === 'save' && request && !saveStarted) {
          saveStarted = true;
          void saveThenGo(created, snapshot.fd, request);
        }
      },
      runRequestByPort: snapshot !== undefined,
      ...(snapshot?.mode === 'restore' ? { restore: { fd: snapshot.fd, expectDigest: Buffer.from(snapshot.digest, 'hex') } } : {}),
    });
    if (snapshot?.mode === 'restore') {
      closeSync(snapshot.fd);
      if (request) created.giveRunRequest(request);
      // Where a restore's time goes, from this process's start: the rest is the vCPU threads' and the guest's.
      log.debug('the VM is restored from its snapshot', { msSinceStart: Math.round(performance.now()) });
    }
  } catch (e) {
    say({ kind: 'ended', end: 'failed', detail: errorMessage(e).slice(0, MAX_DETAIL) });
    process.exit(1);
  }
  vm = created;
  say({ kind: 'created', privateIp: created.network?.fixed?.ip, mac: created.network?.mac });
  attachInput(created);
  const end = await created.run();
  say({
    kind: 'ended', end: hibernated ? 'hibernated' : end.kind, detail: (end.kind === 'crashed' ? end.reason : end.kind === 'exit-status' ? String(end.status) : '').slice(0, MAX_DETAIL),
    ...(end.kind === 'exit-status' ? { status: end.status } : {}),
  });
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
    case 'vsock':
      for (const fd of fds) vsockAnswer(m.port, fd);
      return;
    case 'vsock-refused':
      vsockAnswer(m.port, undefined);
      return;
    case 'shutdown':
      if (vm) vm.requestShutdown();
      else process.exit(0);
      return;
    case 'stop':
      if (vm) vm.stop();
      else process.exit(0);
      return;
    case 'hibernate':
      for (const fd of fds) void hibernate(fd);
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

// The parent going away (or breaking the protocol) stops the VM; before the launch, it simply ends the process.
const channel = new Channel<ControllerMessage, HypervisorMessage>(INHERITED_FDS.channel, controllerMessage, {
  message: receive,
  end: (error) => {
    if (error) log.error('the parent\'s channel broke', { code: error.code, why: error.message });
    for (const port of [...vsockAsks.keys()]) while (vsockAsks.get(port)?.length) vsockAnswer(port, undefined);
    if (vm) vm.stop();
    else process.exit(0);
  },
}, args.instance ? `the parent of ${args.instance}` : 'the parent');
// The parent sends the launch as it starts this process: it is usually waiting already.
channel.receivePending();
