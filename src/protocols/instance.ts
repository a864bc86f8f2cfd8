// What a controller and the hypervisor process of one instance say to each other over their channel (channel.ts):
// the controller creates the pair and the hypervisor inherits its end as descriptor 3, its only line. The
// hypervisor opens nothing: /dev/kvm, the kernel and the disks are descriptors it inherits (their numbers are in
// the launch), and each connection to a card is made by the controller and handed over on the channel (a `card`
// message carries the socket). The guest's console goes to the process's stdout, which the controller points at
// the console log. Each side checks what it receives with the parser for its direction.

/** How the host runs VMs (the kvm layer's KvmFlavour: the compiler checks that they agree where the launch is made). */
export const KVM_FLAVOURS = ['hardware', 'nested-pvm'] as const;

export interface InstanceLaunch {
  readonly kind: 'launch';
  /** Inherited descriptors: /dev/kvm (read-write) and the kernel image (read-only). */
  readonly kvmFd: number;
  readonly kernelFd: number;
  readonly flavour: (typeof KVM_FLAVOURS)[number];
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
  /** A connection to the card `card`: the message's one descriptor (before the launch, or when asked). */
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

/** The descriptor numbers the controller's spawn gives the channel and the inherited files (0-2 are stdio). */
export const INHERITED_FDS = { channel: 3, kvm: 4, kernel: 5, firstDisk: 6 } as const;

/** The longest `detail` of an `ended` message (a crash's reason is cut to it). */
export const MAX_DETAIL = 4096;

const ENDS = new Set(['exit-status', 'reset', 'stopped', 'crashed', 'failed']);
const shortString = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max;
const optionalString = (v: unknown): boolean => v === undefined || shortString(v, 64);
const fdNumber = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) > 0;

/**
 * What the controller accepts from a hypervisor: a message of a known kind with fields of the right types and no
 * descriptors, or undefined (the hypervisor is not trusted to be well-formed: it runs next to a guest).
 */
export function hypervisorMessage(m: unknown, fds = 0): HypervisorMessage | undefined {
  if (typeof m !== 'object' || m === null || fds !== 0) return undefined;
  const r = m as Record<string, unknown>;
  switch (r.kind) {
    case 'created':
      return optionalString(r.privateIp) && optionalString(r.mac) ? m as HypervisorMessage : undefined;
    case 'booted':
      return m as HypervisorMessage;
    case 'connect-card':
      return shortString(r.card) ? m as HypervisorMessage : undefined;
    case 'ended':
      return typeof r.end === 'string' && ENDS.has(r.end) && shortString(r.detail, MAX_DETAIL) ? m as HypervisorMessage : undefined;
    default:
      return undefined;
  }
}

/** What a hypervisor accepts from its controller: a known message with its fields, and one descriptor for a `card`. */
export function controllerMessage(m: unknown, fds = 0): ControllerMessage | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const r = m as Record<string, unknown>;
  if (fds !== (r.kind === 'card' ? 1 : 0)) return undefined;
  switch (r.kind) {
    case 'shutdown':
    case 'stop':
      return m as ControllerMessage;
    case 'card':
      return shortString(r.card) ? m as ControllerMessage : undefined;
    case 'card-unavailable':
      return shortString(r.card) && shortString(r.why, 4096) ? m as ControllerMessage : undefined;
    case 'launch':
      return fdNumber(r.kvmFd) && fdNumber(r.kernelFd) && (KVM_FLAVOURS as readonly unknown[]).includes(r.flavour)
        && shortString(r.cmdline, 4096) && count(r.vcpus) && count(r.memoryMiB)
        && Array.isArray(r.disks) && r.disks.every((d: unknown) => typeof d === 'object' && d !== null
          && fdNumber((d as Record<string, unknown>).fd) && shortString((d as Record<string, unknown>).name)
          && typeof (d as Record<string, unknown>).readOnly === 'boolean')
        && optionalString(r.netCard)
        && (r.volumes === undefined || (Array.isArray(r.volumes) && r.volumes.every((v) => shortString(v))))
        ? m as ControllerMessage : undefined;
    default:
      return undefined;
  }
}
