// Each jailed process's own control group under azote/<name>: a memory limit (a hypervisor's guest's memory and the
// process's own overhead; a card's given), a CPU quota (one core per vCPU; one core for a card), a cpuset of its own
// cores (so sched_setaffinity cannot widen what taskset gave it) and a pids limit (no fork bomb). Works with cgroup v2 (/sys/fs/cgroup/cgroup.controllers) or v1's
// memory, cpu, cpuset and pids hierarchies. The jail's first step writes its own pid into `procsFiles` before it
// executes anything else, so every process and thread of the jail starts inside; the group is removed when the
// process is gone.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../base/log.js';

const ROOT = '/sys/fs/cgroup';
/** Memory the hypervisor process itself needs beyond its guest's (Node, its workers, koffi). */
export const HYPERVISOR_OVERHEAD_MIB = 512;
/** Tasks (processes and threads) one jail may have: Node's own threads, a worker per vCPU, the I/O thread. */
export const JAIL_PIDS_MAX = 256;
const PERIOD_US = 100_000;

export interface Limits {
  readonly memoryMiB: number;
  readonly vcpus: number;
  /** The host CPUs it may run on. */
  readonly cores: readonly number[];
}

/** A cpuset's mems must be set before a task may join; a new v1 group inherits nothing, so copy it from the parent. */
function inheritCpuset(dir: string, file: string): void {
  const own = path.join(dir, file);
  if (readFileSync(own, 'utf8').trim() === '') writeFileSync(own, readFileSync(path.join(path.dirname(dir), file), 'utf8').trim());
}

export class InstanceCgroup {
  private constructor(readonly dirs: readonly string[], private readonly log: Logger) {}

  /** Creates the group with its limits; undefined (and a warning) where this host gives the controller no cgroups. */
  static create(name: string, limits: Limits, log: Logger): InstanceCgroup | undefined {
    return InstanceCgroup.make(name, (limits.memoryMiB + HYPERVISOR_OVERHEAD_MIB) * 2 ** 20, limits.vcpus, limits.cores, log);
  }

  /** A card's group: `memoryMiB`, one core's time, on `cores`. */
  static forCard(name: string, memoryMiB: number, cores: readonly number[], log: Logger): InstanceCgroup | undefined {
    return InstanceCgroup.make(name, memoryMiB * 2 ** 20, 1, cores, log);
  }

  private static make(name: string, memoryBytes: number, cpuCores: number, cores: readonly number[], log: Logger): InstanceCgroup | undefined {
    const quota = cpuCores * PERIOD_US;
    const cpus = cores.join(',');
    const made: string[] = [];
    const mk = (dir: string): string => {
      mkdirSync(dir, { recursive: true });
      made.push(dir);
      return dir;
    };
    try {
      if (existsSync(path.join(ROOT, 'cgroup.controllers'))) {
        const parent = path.join(ROOT, 'azote');
        mkdirSync(parent, { recursive: true });
        writeFileSync(path.join(parent, 'cgroup.subtree_control'), '+memory +cpu +cpuset +pids');
        const dir = mk(path.join(parent, name));
        writeFileSync(path.join(dir, 'memory.max'), String(memoryBytes));
        writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
        writeFileSync(path.join(dir, 'cpuset.cpus'), cpus);
        writeFileSync(path.join(dir, 'pids.max'), String(JAIL_PIDS_MAX));
        return new InstanceCgroup([dir], log);
      }
      const memory = mk(path.join(ROOT, 'memory', 'azote', name));
      writeFileSync(path.join(memory, 'memory.limit_in_bytes'), String(memoryBytes));
      const cpu = mk(path.join(ROOT, 'cpu', 'azote', name));
      writeFileSync(path.join(cpu, 'cpu.cfs_period_us'), String(PERIOD_US));
      writeFileSync(path.join(cpu, 'cpu.cfs_quota_us'), String(quota));
      const cpuset = mk(path.join(ROOT, 'cpuset', 'azote', name));
      for (const f of ['cpuset.cpus', 'cpuset.mems']) inheritCpuset(path.dirname(cpuset), f);
      inheritCpuset(cpuset, 'cpuset.mems');
      writeFileSync(path.join(cpuset, 'cpuset.cpus'), cpus);
      const pids = mk(path.join(ROOT, 'pids', 'azote', name));
      writeFileSync(path.join(pids, 'pids.max'), String(JAIL_PIDS_MAX));
      return new InstanceCgroup([memory, cpu, cpuset, pids], log);
    } catch (e) {
      for (const dir of made.reverse()) {
        try {
          rmdirSync(dir);
        } catch { /* the warning below names the cause; an empty group left behind holds nothing */ }
      }
      log.warn('no control group for the jail: this host does not let the controller make one', { name, why: (e as Error).message });
      return undefined;
    }
  }

  /** The files a process writes its pid into to join every hierarchy of the group. */
  get procsFiles(): string[] {
    return this.dirs.map((dir) => path.join(dir, 'cgroup.procs'));
  }

  /** Removes the group once the processes of a killed jail, still dying, have left it (a few seconds at most). */
  async removeWhenEmpty(): Promise<void> {
    const busy = (): boolean => this.procsFiles.some((f) => {
      try {
        return readFileSync(f, 'utf8').trim() !== '';
      } catch {
        return false;
      }
    });
    for (let i = 0; i < 50 && busy(); i++) await new Promise((r) => setTimeout(r, 100));
    this.remove();
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
