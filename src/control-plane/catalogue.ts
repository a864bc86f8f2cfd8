// What the API offers to launch: the host's built images as AMIs, and instance types mapped to vCPUs and memory.
import { listImages, type ImageRecord } from '../images/rootfs.js';

/** An image's AMI id: "ami-0" and the image's 16-digit content hash (17 digits, as EC2's are). */
export function amiId(image: ImageRecord): string {
  return `ami-0${image.id.slice('img-'.length)}`;
}

/** The size an image's root volume has by default (its block device mapping's VolumeSize). */
export function imageGiB(image: ImageRecord): number {
  return Math.max(1, Math.ceil(image.sizeMiB / 1024));
}

export function images(): Array<ImageRecord & { amiId: string }> {
  return listImages().map((i) => ({ ...i, amiId: amiId(i) }));
}

export function imageByAmi(id: string): (ImageRecord & { amiId: string }) | undefined {
  return images().find((i) => i.amiId === id);
}

export interface InstanceType {
  readonly name: string;
  readonly vcpus: number;
  readonly memoryMiB: number;
}

/**
 * The types Azote runs. Names follow EC2's; sizes are scaled to microVMs (a t3.micro here is one vCPU and 512 MiB),
 * since each vCPU is a whole host core for its instance's account.
 */
export const INSTANCE_TYPES: readonly InstanceType[] = [
  { name: 't3.nano', vcpus: 1, memoryMiB: 256 },
  { name: 't3.micro', vcpus: 1, memoryMiB: 512 },
  { name: 't3.small', vcpus: 1, memoryMiB: 1024 },
  { name: 't3.medium', vcpus: 2, memoryMiB: 2048 },
  { name: 't3.large', vcpus: 2, memoryMiB: 4096 },
  { name: 'm5.large', vcpus: 2, memoryMiB: 8192 },
  { name: 'm5.xlarge', vcpus: 4, memoryMiB: 16384 },
  { name: 'c5.2xlarge', vcpus: 8, memoryMiB: 16384 },
];

export const instanceType = (name: string): InstanceType | undefined => INSTANCE_TYPES.find((t) => t.name === name);
