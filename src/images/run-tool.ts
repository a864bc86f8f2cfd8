// Running the host tools that build guest images (apt-get, dpkg-deb, make), keeping the end of their stderr for the
// error message.
import { spawn } from 'node:child_process';

export interface ToolRun {
  readonly code: number;
  readonly stderr: string;
}

/** How much of a tool's stderr is kept: enough for its last lines. */
const STDERR_TAIL = 16384;

/** Runs a program to completion with no input or output but stderr; a program that cannot be started rejects. */
export function runTool(cmd: string, args: string[], cwd?: string): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s: string) => {
      stderr = (stderr + s).slice(-STDERR_TAIL);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stderr }));
  });
}
