// Benchmarks: `npm run bench -- [NAME...]` (no name runs them all). Each prints its tables; the last line of the
// output is one JSON object with every result, for machine reading.
import { runBoot } from './boot.js';
import { runBlock, runCard } from './block.js';
import { runVsock } from './vsock.js';
import { runNetCard } from './net-card.js';
import { runApi } from './api.js';
import { runJail } from './jail.js';
import { runRestore } from './restore.js';
import { BenchError, killAllChildren } from './proc.js';

// The bare MicroVm processes the benchmarks start inherit it: each vCPU holds one of libuv's pool threads.
process.env['UV_THREADPOOL_SIZE'] ??= '16';

const benches: Record<string, () => Promise<unknown>> = {
  boot: runBoot,
  block: runBlock,
  card: async () => ({ block: await runCard(), net: await runNetCard() }),
  vsock: runVsock,
  api: runApi,
  jail: runJail,
  restore: runRestore,
};

function fail(message: string, status: number): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(status);
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAllChildren();
    fail(`interrupted by ${sig}`, 130);
  });
}

const names = process.argv.slice(2);
const known = Object.keys(benches);
const unknown = names.filter((n) => !(n in benches));
if (unknown.length > 0) {
  fail(`unknown benchmark${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; known: ${known.join(', ')}`, 2);
}

const results: Record<string, unknown> = {};
try {
  for (const name of names.length > 0 ? names : known) {
    const bench = benches[name];
    if (!bench) continue;
    results[name] = await bench();
  }
} catch (e) {
  killAllChildren();
  const msg = e instanceof BenchError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e);
  fail(`failed: ${msg}`, 1);
}
process.stdout.write(`\n${JSON.stringify({ bench: results })}\n`);
