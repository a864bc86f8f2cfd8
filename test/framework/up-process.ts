// `azote up` as a user starts it, in a child process of its own (so a test can kill it with SIGKILL, as a crash
// would), on an ephemeral port; its endpoint is read from what it prints.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import type { NewAccount } from '../../src/control-plane/accounts.js';
import { projectRoot } from '../../src/images/paths.js';
import { REGION } from './ec2.js';

export interface UpProcess {
  readonly child: ChildProcess;
  readonly endpoint: string;
  client(a: NewAccount): sdk.EC2Client;
  /** Resolves once the process has exited. */
  readonly exited: Promise<void>;
}

export function startUpProcess(dataDir: string, timeoutMs = 300_000): Promise<UpProcess> {
  const child = spawn(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'up', '--data-dir', dataDir, '--port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, AZOTE_LOG_LEVEL: 'warn' },
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`azote up did not start in time: ${stderr.slice(-1000)}`));
    }, timeoutMs);
    child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-8192); });
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      const endpoint = /EC2 API at (http:\/\/\S+)/.exec(stdout)?.[1];
      if (!endpoint) return;
      clearTimeout(timer);
      resolve({
        child, endpoint, exited,
        client: (a) => new sdk.EC2Client({
          endpoint, region: REGION, maxAttempts: 1, credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
        }),
      });
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`azote up ended (${signal ?? `status ${code}`}) before it started: ${stderr.slice(-1000)}`));
    });
  });
}
