// Running the host tools that build guest images and provision the host (apt-get, dpkg-deb, dpkg-query, make),
// keeping the end of their output for the caller and the error message.
import { spawn } from 'node:child_process';

export interface ToolRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** How much of a tool's stderr is kept: enough for its last lines. */
const STDERR_TAIL = 16384;
/** How much of its stdout is kept: all of a listing such as dpkg-query's. */
const STDOUT_TAIL = 1 << 20;

/**
 * Runs a program to completion with no input; a program that cannot be started rejects. `env` adds to this
 * process's environment.
 */
export function runTool(cmd: string, args: string[], cwd?: string, env?: Record<string, string>): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout = (stdout + s).slice(-STDOUT_TAIL);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_TAIL);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
  });
}
