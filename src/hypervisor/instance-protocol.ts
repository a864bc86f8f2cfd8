// What a controller and the hypervisor process of one instance say to each other over the IPC channel the
// controller creates: a Unix socket pair inherited by the hypervisor, its only channel. The hypervisor opens
// nothing: /dev/kvm, the kernel and the disks are descriptors it inherits (their numbers are in the launch), and
// each connection to a card is made by the controller and handed over on the channel (`card` messages carry the
// socket). The guest's console goes to the process's stdout, which the controller points at the console log.
import type { KvmFlavour } from '../kvm/kvm.js';

export interface InstanceLaunch {
  readonly kind: 'launch';
  /** Inherited descriptors: /dev/kvm (read-write) and the kernel image (read-only). */
  readonly kvmFd: number;
  readonly kernelFd: number;
  readonly flavour: KvmFlavour;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /** Inherited disk descriptors, in order; `name` only names them in messages. */
  readonly disks: ReadonlyArray<{ readonly fd: number; readonly name: string; readonly readOnly: boolean }>;
  /** The cards the VM uses, by the names `card` messages give: the network card's, then each volume's. */
  readonly netCard?: string | undefined;
  readonly volumes?: readonly string[] | undefined;
}

export type ControllerMessage =
  | InstanceLaunch
  /** Ask the guest to shut down (guest/ABI.md, the shutdown-request port); the VM ends when it powers off. */
  | { readonly kind: 'shutdown' }
  /** Stop the VM now. */
  | { readonly kind: 'stop' }
  /** A connection to the card `card`, sent with the message's handle (before the launch, or when asked). */
  | { readonly kind: 'card'; readonly card: string }
  /** No connection to `card` can be made now (it is restarting): ask again later. */
  | { readonly kind: 'card-unavailable'; readonly card: string; readonly why: string };

export type HypervisorMessage =
  /** The VM exists (devices attached, cards connected); its address on the network card, if any. */
  | { readonly kind: 'created'; readonly privateIp?: string | undefined; readonly mac?: string | undefined }
  /** The guest's init started (its boot marker). */
  | { readonly kind: 'booted' }
  /** A card's connection closed: the hypervisor asks for a new one. */
  | { readonly kind: 'connect-card'; readonly card: string }
  /** The VM ended; the process exits after this. */
  | { readonly kind: 'ended'; readonly end: 'exit-status' | 'reset' | 'stopped' | 'crashed' | 'failed'; readonly detail: string };

/** The descriptor numbers the controller's spawn gives the inherited files (0-2 are stdio, 3 the channel). */
export const INHERITED_FDS = { kvm: 4, kernel: 5, firstDisk: 6 } as const;

const ENDS = new Set(['exit-status', 'reset', 'stopped', 'crashed', 'failed']);
const optionalString = (v: unknown): boolean => v === undefined || (typeof v === 'string' && v.length <= 64);

/**
 * What the controller accepts from a hypervisor: a message of a known kind with fields of the right types, or
 * undefined (the hypervisor is not trusted to be well-formed: it runs next to a guest).
 */
export function hypervisorMessage(m: unknown): HypervisorMessage | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const r = m as Record<string, unknown>;
  switch (r.kind) {
    case 'created':
      return optionalString(r.privateIp) && optionalString(r.mac) ? m as HypervisorMessage : undefined;
    case 'booted':
      return m as HypervisorMessage;
    case 'connect-card':
      return typeof r.card === 'string' ? m as HypervisorMessage : undefined;
    case 'ended':
      return typeof r.end === 'string' && ENDS.has(r.end) && typeof r.detail === 'string' && r.detail.length <= 4096 ? m as HypervisorMessage : undefined;
    default:
      return undefined;
  }
}
