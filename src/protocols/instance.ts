// What a controller (or `azote run`) and the hypervisor process of one VM say to each other over their channel
// (channel.ts): the parent creates the pair and the hypervisor inherits its end as descriptor 3, its only line. The
// hypervisor opens nothing: /dev/kvm, the kernel, the initramfs, the disks, a TAP and a vsock's listening socket are
// descriptors it inherits (their numbers are in the launch), and each connection to a card, or to a host program a
// guest's vsock connection reaches, is made by the parent and handed over on the channel (a `card` or `vsock`
// message carries the socket). The guest's console output goes to the process's stdout, which the controller points
// at the console log and `azote run` reads; its input comes on stdin (nothing, for an instance). Each side checks
// what it receives with the parser for its direction.

/** How the host runs VMs (the kvm layer's KvmFlavour: the compiler checks that they agree where the launch is made). */
export const KVM_FLAVOURS = ['hardware', 'nested-pvm'] as const;

export interface InstanceLaunch {
  readonly kind: 'launch';
  /** Inherited descriptors: /dev/kvm (read-write), the kernel image and the initramfs, if any (read-only). */
  readonly kvmFd: number;
  readonly kernelFd: number;
  readonly initrdFd?: number | undefined;
  readonly flavour: (typeof KVM_FLAVOURS)[number];
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /**
   * What guest memory is (the isolation layer's MemoryProtection, chosen by the parent for its host): secret memory
   * or a sealed memfd, and whether the guest must run without kvmclock (then the hypervisor says so on its command
   * line).
   */
  readonly memory: LaunchMemory;
  /** Inherited disk descriptors, in order; `name` only names them in messages. */
  readonly disks: ReadonlyArray<{ readonly fd: number; readonly name: string; readonly readOnly: boolean }>;
  /** The cards the VM uses, by the names `card` messages give: the network card's, then each volume's. */
  readonly netCard?: string | undefined;
  readonly volumes?: readonly string[] | undefined;
  /** A virtio-rng device. */
  readonly rng: boolean;
  /** A virtio-net device on this inherited TAP, and the guest's addressing on it (its init configures eth0 so). */
  readonly tap?: LaunchTap | undefined;
  /**
   * A virtio-vsock device whose host programs connect to this inherited listening socket; the guest's connections
   * to the host are asked for with `connect-vsock`.
   */
  readonly vsockFd?: number | undefined;
  /**
   * The guest's init takes its run request from the run-request ports (base64 of src/images/run-request.ts's
   * runRequestBytes): `save` boots and writes a snapshot to the inherited fd where init waits for the request, then
   * gives the request; `restore` continues the snapshot in the inherited fd (whose digest the parent checked with its
   * MAC: hex) and gives the request if there is one (a hibernated instance's guest waits for none).
   */
  readonly snapshot?: LaunchSnapshot | undefined;
  readonly runRequest?: string | undefined;
}

export const GUEST_MEMORY_KINDS = ['secret', 'memfd'] as const;

export interface LaunchMemory {
  readonly kind: (typeof GUEST_MEMORY_KINDS)[number];
  readonly noKvmclock: boolean;
}

export type LaunchSnapshot =
  | { readonly mode: 'save'; readonly fd: number }
  | { readonly mode: 'restore'; readonly fd: number; readonly digest: string };

export interface LaunchTap {
  readonly fd: number;
  readonly mac: string;
  readonly hostIp: string;
  readonly guestIp: string;
  readonly prefix: number;
}

export type ControllerMessage =
  | InstanceLaunch
  /** Ask the guest to shut down (guest/ABI.md, the shutdown-request port); the VM ends when it powers off. */
  | { readonly kind: 'shutdown' }
  /** Stop the VM now. */
  | { readonly kind: 'stop' }
  /**
   * Hibernate: save the VM's snapshot (docs/snapshot-format.md) into the message's one descriptor (a writable file or
   * memfd, written from offset 0) and end with `hibernated`; if it cannot be saved, say `snapshot-failed` and go on.
   */
  | { readonly kind: 'hibernate' }
  /** A connection to the card `card`: the message's one descriptor (before the launch, or when asked). */
  | { readonly kind: 'card'; readonly card: string }
  /** No connection to `card` can be made now (it is restarting): ask again later. */
  | { readonly kind: 'card-unavailable'; readonly card: string; readonly why: string }
  /** The answer to a `connect-vsock`: the message's one descriptor, connected to the host program at `port`. */
  | { readonly kind: 'vsock'; readonly port: number }
  /** The answer to a `connect-vsock` when nobody listens at `port`: the guest's connection is refused. */
  | { readonly kind: 'vsock-refused'; readonly port: number };

export type HypervisorMessage =
  /** The VM exists (devices attached, cards connected); its address on the network card, if any. */
  | { readonly kind: 'created'; readonly privateIp?: string | undefined; readonly mac?: string | undefined }
  /** The guest's init started (its boot marker). */
  | { readonly kind: 'booted' }
  /** The snapshot of a `save` launch is written (the parent seals it); `ms` is how long the VM was held. */
  | { readonly kind: 'snapshot-saved'; readonly bytes: number; readonly pages: number; readonly ms: number }
  /** The snapshot of a `save` launch could not be made; the VM goes on. */
  | { readonly kind: 'snapshot-failed'; readonly detail: string }
  /** A card's connection closed: the hypervisor asks for a new one. */
  | { readonly kind: 'connect-card'; readonly card: string }
  /** The guest connects to host port `port` of its vsock: the hypervisor asks for a connection (answered in order). */
  | { readonly kind: 'connect-vsock'; readonly port: number }
  /** The VM ended; the process exits after this. `status` is the guest's exit status, with `exit-status` only. */
  | {
    readonly kind: 'ended'; readonly end: 'exit-status' | 'reset' | 'stopped' | 'crashed' | 'failed' | 'hibernated'; readonly detail: string;
    readonly status?: number | undefined;
  };

/** The descriptor numbers the controller's spawn gives the channel and the inherited files (0-2 are stdio). */
export const INHERITED_FDS = { channel: 3, kvm: 4, kernel: 5, firstDisk: 6 } as const;

/** The longest `detail` of an `ended` message (a crash's reason is cut to it). */
export const MAX_DETAIL = 4096;

const ENDS = new Set(['exit-status', 'reset', 'stopped', 'crashed', 'failed', 'hibernated']);
const shortString = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length <= max;
const optionalString = (v: unknown): boolean => v === undefined || shortString(v, 64);
const fdNumber = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const count = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) > 0;
/** A vsock port: 32 bits. */
const port = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= 0xffffffff;
const ipv4 = (v: unknown): boolean => typeof v === 'string' && /^(\d{1,3})(\.\d{1,3}){3}$/.test(v) && v.split('.').every((b) => Number(b) <= 255);
const record = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
/** The largest run request, base64 (65536 bytes: MAX_PORT_RUN_REQUEST). */
const MAX_RUN_REQUEST_BASE64 = 87384;
const launchSnapshot = (v: unknown): boolean => v === undefined || (record(v) && fdNumber(v.fd)
  && (v.mode === 'save' || (v.mode === 'restore' && typeof v.digest === 'string' && /^[0-9a-f]{96}$/.test(v.digest))));
/**
 * A save needs the request it gives after saving; a restore gives one only where the snapshot's init waits for it
 * (`azote run`'s), not where it continues a running guest (a hibernated instance's); a boot takes none.
 */
const runRequest = (snapshot: unknown, v: unknown): boolean => {
  if (snapshot === undefined) return v === undefined;
  if (v === undefined) return record(snapshot) && snapshot.mode === 'restore';
  return typeof v === 'string' && v.length <= MAX_RUN_REQUEST_BASE64 && /^[A-Za-z0-9+/]*={0,2}$/.test(v);
};
const launchMemory = (v: unknown): boolean => record(v) && (GUEST_MEMORY_KINDS as readonly unknown[]).includes(v.kind)
  && typeof v.noKvmclock === 'boolean';
const launchTap = (v: unknown): boolean => v === undefined || (record(v) && fdNumber(v.fd) && typeof v.mac === 'string'
  && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(v.mac) && ipv4(v.hostIp) && ipv4(v.guestIp)
  && Number.isSafeInteger(v.prefix) && (v.prefix as number) >= 1 && (v.prefix as number) <= 30);

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
    case 'snapshot-saved':
      return count(r.bytes) && Number.isSafeInteger(r.pages) && (r.pages as number) >= 0 && typeof r.ms === 'number' && Number.isFinite(r.ms)
        && r.ms >= 0 ? m as HypervisorMessage : undefined;
    case 'snapshot-failed':
      return shortString(r.detail, MAX_DETAIL) ? m as HypervisorMessage : undefined;
    case 'connect-card':
      return shortString(r.card) ? m as HypervisorMessage : undefined;
    case 'connect-vsock':
      return port(r.port) ? m as HypervisorMessage : undefined;
    case 'ended':
      return typeof r.end === 'string' && ENDS.has(r.end) && shortString(r.detail, MAX_DETAIL)
        && (r.end === 'exit-status' ? Number.isSafeInteger(r.status) && (r.status as number) >= 0 && (r.status as number) <= 255 : r.status === undefined)
        ? m as HypervisorMessage : undefined;
    default:
      return undefined;
  }
}

/** What a hypervisor accepts from its parent: a known message with its fields, and one descriptor for a `card` or `vsock`. */
export function controllerMessage(m: unknown, fds = 0): ControllerMessage | undefined {
  if (typeof m !== 'object' || m === null) return undefined;
  const r = m as Record<string, unknown>;
  if (fds !== (r.kind === 'card' || r.kind === 'vsock' || r.kind === 'hibernate' ? 1 : 0)) return undefined;
  switch (r.kind) {
    case 'shutdown':
    case 'stop':
    case 'hibernate':
      return m as ControllerMessage;
    case 'card':
      return shortString(r.card) ? m as ControllerMessage : undefined;
    case 'card-unavailable':
      return shortString(r.card) && shortString(r.why, 4096) ? m as ControllerMessage : undefined;
    case 'vsock':
    case 'vsock-refused':
      return port(r.port) ? m as ControllerMessage : undefined;
    case 'launch':
      return fdNumber(r.kvmFd) && fdNumber(r.kernelFd) && (r.initrdFd === undefined || fdNumber(r.initrdFd))
        && (KVM_FLAVOURS as readonly unknown[]).includes(r.flavour)
        && shortString(r.cmdline, 4096) && count(r.vcpus) && count(r.memoryMiB) && launchMemory(r.memory)
        && Array.isArray(r.disks) && r.disks.every((d: unknown) => typeof d === 'object' && d !== null
          && fdNumber((d as Record<string, unknown>).fd) && shortString((d as Record<string, unknown>).name)
          && typeof (d as Record<string, unknown>).readOnly === 'boolean')
        && (r.netCard === undefined || shortString(r.netCard))
        && (r.volumes === undefined || (Array.isArray(r.volumes) && r.volumes.every((v) => shortString(v))))
        && typeof r.rng === 'boolean' && launchTap(r.tap) && (r.vsockFd === undefined || fdNumber(r.vsockFd))
        && launchSnapshot(r.snapshot) && runRequest(r.snapshot, r.runRequest)
        ? m as ControllerMessage : undefined;
    default:
      return undefined;
  }
}
