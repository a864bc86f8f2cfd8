// A vCPU's thread: creates the vCPU on this thread, sets its boot state, and runs it until the VM stops.
// Port and MMIO exits are forwarded to the main thread (see vcpu-protocol.ts); everything else is decided here.
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { restrictThisThread } from '../sys/seccomp.js';
import { Kvm, Vm, type Vcpu } from '../kvm/kvm.js';
import { restoreVcpuState, savableMsrs } from '../kvm/vcpu-state.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { setupVcpu } from '../boot/vcpu-setup.js';
import { CTL, CTL_WORDS, KIND, STATE, type VcpuMessage, type VcpuStop, type VcpuThreadInit } from './vcpu-protocol.js';
import { applyQuirk, classify, failedInstruction, KVM_INTERNAL_ERROR_EMULATION } from './pvm-quirks.js';

class Stopped extends Error {}

const init = workerData as VcpuThreadInit;
const port = parentPort;
if (!port) throw new Error('vcpu-thread must run as a worker');
const post = (m: VcpuMessage): void => port.postMessage(m);
const ctl = new Int32Array(init.control, init.index * CTL_WORDS * 4, CTL_WORDS);

/** Asks the main thread to perform one access; returns the value read (0 for writes). */
function request(kind: number, addr: number, size: number, write: boolean, value: bigint): bigint {
  ctl[CTL.KIND] = kind;
  ctl[CTL.ADDR_LO] = addr | 0;
  ctl[CTL.ADDR_HI] = Math.floor(addr / 0x100000000) | 0;
  ctl[CTL.SIZE] = size;
  ctl[CTL.WRITE] = write ? 1 : 0;
  ctl[CTL.VAL_LO] = Number(value & 0xffffffffn) | 0;
  ctl[CTL.VAL_HI] = Number((value >> 32n) & 0xffffffffn) | 0;
  if (Atomics.compareExchange(ctl, CTL.STATE, STATE.IDLE, STATE.REQUEST) !== STATE.IDLE) throw new Stopped();
  post({ type: 'io', index: init.index });
  let s: number;
  while ((s = Atomics.load(ctl, CTL.STATE)) === STATE.REQUEST) Atomics.wait(ctl, CTL.STATE, STATE.REQUEST);
  if (s !== STATE.DONE) throw new Stopped();
  Atomics.store(ctl, CTL.STATE, STATE.IDLE);
  return (BigInt(ctl[CTL.VAL_HI] ?? 0) & 0xffffffffn) << 32n | (BigInt(ctl[CTL.VAL_LO] ?? 0) & 0xffffffffn);
}

function readLe(b: Uint8Array, off: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[off + i] ?? 0);
  return v;
}

function writeLe(b: Uint8Array, off: number, size: number, v: bigint): void {
  for (let i = 0; i < size; i++) { b[off + i] = Number(v & 0xffn); v >>= 8n; }
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * Holds the vCPU for a snapshot: completes the I/O it exited on (so its registers say what the guest will see next),
 * tells the main thread, which reads its state, and waits until it is let go (or stopped).
 */
function pause(vcpu: Vcpu): void {
  vcpu.completePendingIo();
  post({ type: 'paused', index: init.index });
  while (Atomics.load(ctl, CTL.PAUSE) === 1 && Atomics.load(ctl, CTL.STATE) !== STATE.STOP) Atomics.wait(ctl, CTL.PAUSE, 1, 100);
}

function runLoop(vcpu: Vcpu): VcpuStop {
  const page = vcpu.runBytes();
  const mmioData = vcpu.run.field('mmioData');
  for (;;) {
    if (Atomics.load(ctl, CTL.STATE) === STATE.STOP) return { kind: 'stopped' };
    if (Atomics.load(ctl, CTL.PAUSE) === 1) {
      pause(vcpu);
      continue;
    }
    const exit = vcpu.enter();
    switch (exit.kind) {
      case 'intr':
        continue;
      case 'io': {
        // String instructions (rep ins/outs) carry `count` items back to back.
        for (let i = 0; i < exit.count; i++) {
          const off = exit.dataOffset + i * exit.size;
          if (off + exit.size > page.length) return { kind: 'error', detail: 'I/O data outside the run page' };
          if (exit.write) request(KIND.PIO, exit.port, exit.size, true, readLe(page, off, exit.size));
          else writeLe(page, off, exit.size, request(KIND.PIO, exit.port, exit.size, false, 0n));
        }
        continue;
      }
      case 'mmio': {
        const size = Math.min(exit.size, 8);
        const addr = Number(exit.address);
        if (exit.write) request(KIND.MMIO, addr, size, true, readLe(mmioData, 0, size));
        else writeLe(mmioData, 0, size, request(KIND.MMIO, addr, size, false, 0n));
        continue;
      }
      case 'hlt':
        return { kind: 'hlt' };
      case 'shutdown':
        return { kind: 'triple-fault' };
      case 'system-event':
        return { kind: 'system-event', type: exit.type };
      case 'fail-entry':
        return { kind: 'fail-entry', detail: `hardware entry failure reason 0x${exit.reason.toString(16)}` };
      case 'internal-error': {
        const insn = exit.suberror === KVM_INTERNAL_ERROR_EMULATION ? failedInstruction(exit.data) : undefined;
        if (init.flavour === 'nested-pvm' && insn) {
          const q = classify(insn);
          if (q) {
            applyQuirk(vcpu, q);
            continue;
          }
        }
        const rip = vcpu.getRegs().get64('rip');
        return {
          kind: 'internal-error',
          detail: `KVM internal error ${exit.suberror} at rip 0x${rip.toString(16)}${insn ? ` (instruction ${hex(insn)})` : ''}`,
        };
      }
      case 'other':
        return { kind: 'error', detail: `unexpected KVM exit reason ${exit.reason}` };
    }
  }
}

/**
 * Counts this vCPU in and waits until every vCPU of the VM exists. A guest's INIT/SIPI to a vCPU that KVM has not
 * created yet is lost, and that AP never starts (seen with 4 vCPUs on 2 host cores). False if the VM stopped first.
 */
function waitForAllVcpus(): boolean {
  const gate = new Int32Array(init.startGate);
  Atomics.add(gate, 0, 1);
  Atomics.notify(gate, 0);
  for (let n = Atomics.load(gate, 0); n < init.vcpus; n = Atomics.load(gate, 0)) {
    if (Atomics.load(ctl, CTL.STATE) === STATE.STOP) return false;
    Atomics.wait(gate, 0, n, 50); // also wakes now and then to see a STOP from a VM whose other vCPU failed
  }
  return true;
}

function main(): void {
  libc.setThreadName(`azote-vcpu${init.index}`);
  let vcpu: Vcpu | undefined;
  let stop: VcpuStop;
  try {
    const vm = new Vm(init.vmFd, Kvm.fromFd(init.kvmFd));
    vcpu = vm.createVcpu(init.index);
    let msrsRefused = 0;
    let msrs: number[];
    if (init.restore) {
      vcpu.setCpuid(init.cpuid);
      // Probed before the restore: the probe writes back what it read.
      msrs = savableMsrs(vm.kvm, vcpu);
      restoreVcpuState(vcpu, init.restore);
    } else {
      if (!init.plan) throw new Error('a vCPU needs a boot plan or a state to restore');
      ({ msrsRefused } = setupVcpu(vcpu, GuestMemory.attach(init.memory), init.plan, init.cpuid, init.vcpus));
      msrs = savableMsrs(vm.kvm, vcpu);
    }
    post({
      type: 'ready', index: init.index, tid: libc.gettid(), runAddress: vcpu.runMapping.address,
      runSize: vcpu.runMapping.length, msrsRefused, vcpuFd: vcpu.fd, msrs,
    });
    // Set up: from here it needs little more than KVM_RUN and the futex it waits on.
    if (init.confine) restrictThisThread(init.confine);
    stop = waitForAllVcpus() ? runLoop(vcpu) : { kind: 'stopped' };
  } catch (e) {
    stop = e instanceof Stopped ? { kind: 'stopped' } : { kind: 'error', detail: errorMessage(e) };
  }
  post({ type: 'ended', index: init.index, stop });
  // The main thread may still write this vCPU's run page while it stops the VM; it says STOP when it is done.
  let s: number;
  while ((s = Atomics.load(ctl, CTL.STATE)) !== STATE.STOP) Atomics.wait(ctl, CTL.STATE, s);
  vcpu?.close();
}

main();
