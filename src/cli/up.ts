// `azote up` and `azote account create`.
import { mkdirSync } from 'node:fs';
import type { Logger } from '../base/log.js';
import { createAccount } from '../control-plane/accounts.js';
import type { HostPolicy } from '../control-plane/api.js';
import { Store } from '../control-plane/store.js';
import { DEFAULT_SERVER_LIMITS } from '../control-plane/server.js';
import type { BucketSize } from '../control-plane/throttle.js';
import { defaultDataDir } from '../controller/data-dir.js';
import { up } from '../control-plane/up.js';

export interface UpCliOptions extends HostPolicy {
  readonly port: number;
  readonly host: string;
  readonly dataDir?: string | undefined;
  readonly region: string;
  /** commander's --no-uplink: false when given. */
  readonly uplink: boolean;
  readonly shareCoresWithinAccount?: boolean | undefined;
  readonly apiRateDescribe?: BucketSize | undefined;
  readonly apiRateMutate?: BucketSize | undefined;
  readonly apiMaxConnections?: number | undefined;
}

export async function runUp(o: UpCliOptions, log: Logger): Promise<void> {
  const d = DEFAULT_SERVER_LIMITS;
  const apiLimits = {
    ...d, maxConnections: o.apiMaxConnections ?? d.maxConnections,
    throttle: { describe: o.apiRateDescribe ?? d.throttle.describe, mutate: o.apiRateMutate ?? d.throttle.mutate },
  };
  const running = await up({ ...o, uplinks: o.uplink, dataDir: o.dataDir ?? defaultDataDir(), apiLimits, log });
  process.stdout.write(`azote: EC2 API at ${running.endpoint} (aws ec2 --endpoint-url ${running.endpoint} ...); Ctrl-C stops it and its instances\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  log.info('shutting down: stopping the instances');
  await running.close();
}

export function accountCreate(name: string, dataDir = defaultDataDir()): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const store = new Store(dataDir);
  try {
    const a = createAccount(store, dataDir, name);
    process.stderr.write(`azote: account ${a.name} (${a.accountId}) created; the secret is shown only now\n`);
    process.stdout.write(`AWS_ACCESS_KEY_ID=${a.accessKeyId}\nAWS_SECRET_ACCESS_KEY=${a.secretAccessKey}\n`);
  } finally {
    store.close();
  }
}
