// Where virtio-mmio devices sit in a VM (guest/ABI.md): one 4 KiB window each from 0xd000_0000, one IOAPIC input
// (GSI) each, announced to Linux on its command line as virtio_mmio.device=<size>@<base>:<irq>.
export const VIRTIO_MMIO_BASE = 0xd0000000;
export const VIRTIO_MMIO_WINDOW = 0x1000;
/**
 * The IOAPIC inputs no legacy device claims: the free ISA lines 5, 6, 7, 9, 10, 11, 14 and 15 (0-2 are the timer,
 * keyboard and cascade, 3 and 4 the COM ports, 8 the RTC, 12 and 13 the PS/2 mouse and FPU), then 16-23, which the
 * MP table routes like ISA lines (edge-triggered, active high) and KVM's default routing sends to the IOAPIC.
 */
const FREE_IRQS = [5, 6, 7, 9, 10, 11, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23];
export const MAX_VIRTIO_DEVICES = FREE_IRQS.length;

export interface VirtioSlot {
  readonly base: number;
  readonly irq: number;
  /** The kernel parameter that makes Linux probe this window. */
  readonly kernelParam: string;
}

export function virtioSlot(index: number): VirtioSlot {
  const irq = FREE_IRQS[index];
  if (irq === undefined) throw new RangeError(`at most ${FREE_IRQS.length} virtio-mmio devices, not ${index + 1}`);
  const base = VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_WINDOW;
  return { base, irq, kernelParam: `virtio_mmio.device=${VIRTIO_MMIO_WINDOW / 1024}K@0x${base.toString(16)}:${irq}` };
}
