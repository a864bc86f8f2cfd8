// What a controller and the hypervisor process of one instance say to each other over the IPC channel the
// controller creates (a Unix socket pair inherited by the hypervisor: its only channel; it listens on nothing and
// connects nowhere but to the cards it is told of). The guest's console goes to the process's stdout, which the
// controller points at the instance's console log.

export interface InstanceLaunch {
  readonly kind: 'launch';
  readonly kernel: string;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
  readonly disks: ReadonlyArray<{ readonly path: string; readonly readOnly: boolean }>;
  /** The network card's vhost-user socket. */
  readonly netCard?: string | undefined;
  /** Volumes: block cards' vhost-user sockets. */
  readonly volumes?: readonly string[] | undefined;
}

export type ControllerMessage = InstanceLaunch | { readonly kind: 'stop' };

export type HypervisorMessage =
  /** The VM exists (devices attached, cards connected); its address on the network card, if any. */
  | { readonly kind: 'created'; readonly privateIp?: string | undefined; readonly mac?: string | undefined }
  /** The guest's init started (its boot marker). */
  | { readonly kind: 'booted' }
  /** The VM ended; the process exits after this. */
  | { readonly kind: 'ended'; readonly end: 'exit-status' | 'reset' | 'stopped' | 'crashed' | 'failed'; readonly detail: string };
