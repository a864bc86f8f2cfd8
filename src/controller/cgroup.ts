// Each hypervisor's own control group: a memory limit (its guest's memory and the process's own overhead) and a CPU
// quota (one core per vCPU), under azote/<instance id>. Works with cgroup v2 (/sys/fs/cgroup/cgroup.controllers) or
// v1's memory and cpu hierarchies. The controller adds the process right after starting it (before the VM exists,
// so every thread it makes is inside), and removes the group when the process is gone.
import { existsSync, mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../base/log.js';

const ROOT = '/sys/fs/cgroup';
/** Memory the hypervisor process itself needs beyond its guest's (Node, its workers, koffi). */
export const HYPERVISOR_OVERHEAD_MIB = 512;
const PERIOD_US = 100_000;

export interface Limits {
  readonly memoryMiB: number;
  readonly vcpus: number;
}

export class InstanceCgroup {
  private constructor(readonly dirs: readonly string[], private readonly log: Logger) {}

  /** Creates the group with its limits; undefined (and a warning) where this host gives the controller no cgroups. */
  static create(instanceId: string, limits: Limits, log: Logger): InstanceCgroup | undefined {
    const memoryBytes = (limits.memoryMiB + HYPERVISOR_OVERHEAD_MIB) * 2 ** 20;
    const quota = limits.vcpus * PERIOD_US;
    try {
      if (existsSync(path.join(ROOT, 'cgroup.controllers'))) {
        const parent = path.join(ROOT, 'azote');
        mkdirSync(parent, { recursive: true });
        writeFileSync(path.join(parent, 'cgroup.subtree_control'), '+memory +cpu');
        const dir = path.join(parent, instanceId);
        mkdirSync(dir, { recursive: true });
        writeFileSync(path.join(dir, 'memory.max'), String(memoryBytes));
        writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
        return new InstanceCgroup([dir], log);
      }
      const memory = path.join(ROOT, 'memory', 'azote', instanceId);
      const cpu = path.join(ROOT, 'cpu', 'azote', instanceId);
      mkdirSync(memory, { recursive: true });
      mkdirSync(cpu, { recursive: true });
      writeFileSync(path.join(memory, 'memory.limit_in_bytes'), String(memoryBytes));
      writeFileSync(path.join(cpu, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
      return new InstanceCgroup([memory, cpu], log);
    } catch (e) {
      log.warn('no control group for the hypervisor: this host does not let the controller make one', { instance: instanceId, why: (e as Error).message });
      return undefined;
    }
  }

  add(pid: number): void {
    for (const dir of this.dirs) writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
  }

  remove(): void {
    for (const dir of this.dirs) {
      try {
        rmdirSync(dir);
      } catch (e) {
        this.log.warn('a control group could not be removed', { dir, why: (e as Error).message });
      }
    }
  }
}
