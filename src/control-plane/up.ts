// `azote up`: this host's controller and the embedded control plane in one process, state in SQLite under the data
// directory (one `azote up` per directory: it is locked).
import { mkdirSync, openSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { AzoteError } from '../base/errors.js';
import type { Logger } from '../base/log.js';
import * as libc from '../sys/libc.js';
import { Controller, type HostCapacity } from '../controller/controller.js';
import { sealingKey } from './accounts.js';
import { Ec2Api, type HostPolicy } from './api.js';
import { createEc2Server, type ServerLimits } from './server.js';
import { Store } from './store.js';

export interface UpOptions extends HostPolicy {
  readonly dataDir: string;
  readonly host: string;
  readonly port: number;
  readonly region: string;
  /** Whether VPCs get an uplink to the host (a TAP holding the VPC's first address) where their CIDR allows. */
  readonly uplinks: boolean;
  /** Let one account's instances share physical cores (two accounts never do). */
  readonly shareCoresWithinAccount?: boolean | undefined;
  /** Throttling, connection cap and timeouts of the API (DEFAULT_SERVER_LIMITS if not given). */
  readonly apiLimits?: ServerLimits | undefined;
  readonly log: Logger;
}

export interface Up {
  readonly endpoint: string;
  readonly capacity: HostCapacity;
  close(): Promise<void>;
}

export async function up(o: UpOptions): Promise<Up> {
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 });
  const lockFd = openSync(path.join(o.dataDir, 'up.lock'), 'a', 0o600);
  if (!libc.flock(lockFd, libc.LOCK_EX | libc.LOCK_NB)) {
    throw new AzoteError('DataDirInUse', `another azote up is using ${o.dataDir}`, 'stop it first, or give another --data-dir');
  }
  const store = new Store(o.dataDir);
  const controller = await Controller.start({ dataDir: o.dataDir, log: o.log.child('controller'), uplinks: o.uplinks });
  const api = new Ec2Api(store, controller, o.region, o.dataDir, o.log.child('api'), o.shareCoresWithinAccount ?? false, o);
  const server = createEc2Server({ api, sealingKey: sealingKey(o.dataDir), log: o.log.child('api'), limits: o.apiLimits });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new AzoteError('ApiListen', `cannot listen on ${o.host}:${o.port}: ${e.message}`,
      e.code === 'EADDRINUSE' ? 'another program uses the port: choose one with --port' : undefined)));
    server.listen(o.port, o.host, () => resolve());
  }).catch(async (e: unknown) => {
    await api.close();
    store.close();
    throw e;
  });
  const addr = server.address() as AddressInfo;
  const endpoint = `http://${addr.address}:${addr.port}`;
  o.log.info('EC2 API listening', { endpoint, region: o.region, dataDir: o.dataDir, cores: controller.capacity.cores, memoryMiB: controller.capacity.memoryMiB });
  return {
    endpoint,
    capacity: controller.capacity,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
      await api.close();
      store.close();
      libc.close(lockFd);
    },
  };
}
