// Debian's AWS CLI v2 against a test host: each call with the account's keys, no configuration of the user's, text
// output; a failure is returned (its exit code and stderr), not thrown.
import { execFile } from 'node:child_process';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import type { NewAccount } from '../../src/control-plane/accounts.js';
import type { Ec2Host } from './ec2.js';
import { AWS_CLI } from './host-tools.js';

const run = promisify(execFile);

export type AwsCli = (...args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

export function cli(host: Ec2Host, a: Pick<NewAccount, 'accessKeyId' | 'secretAccessKey'>): AwsCli {
  return async (...args) => {
    try {
      const r = await run(AWS_CLI, ['ec2', ...args, '--endpoint-url', host.endpoint, '--output', 'text'], {
        env: {
          PATH: process.env['PATH'] ?? '', HOME: tmpdir(), AWS_ACCESS_KEY_ID: a.accessKeyId, AWS_SECRET_ACCESS_KEY: a.secretAccessKey,
          AWS_DEFAULT_REGION: 'us-east-1', AWS_CONFIG_FILE: '/dev/null', AWS_SHARED_CREDENTIALS_FILE: '/dev/null', AWS_PAGER: '',
          AWS_EC2_METADATA_DISABLED: 'true',
        },
        timeout: 600_000,
      });
      return { code: 0, stdout: r.stdout.trim(), stderr: r.stderr };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof err.code === 'number' ? err.code : -1, stdout: (err.stdout ?? '').trim(), stderr: err.stderr ?? '' };
    }
  };
}
