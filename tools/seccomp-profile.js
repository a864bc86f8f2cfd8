// Writes the seccomp allowlists of the hypervisor and the cards from what they really call: runs test files that
// start them (through the controller, in their jails) under `strace -f`, finds each jailed process by its entry,
// and lists the system calls each role made once its filter was installed: the process (every thread, after the
// process-wide filter) and each named thread role (a thread named azote-io, after its own filter),
// with the ioctl requests of the roles whose lists restrict them. Calls on seccomp.ts's MUST_FAIL list are left
// out (they fail, and must) and reported. A call seen refused (EPERM) is kept: it was attempted by code that runs.
//
//   npm run build && node tools/seccomp-profile.js [TEST FILES...]
//
// Run it again when the hypervisor or a card starts calling something new (a new device, a new Node version):
// the suite's VM tests fail with EPERM where a list misses a call.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { MUST_FAIL } from '../dist/src/sys/seccomp.js';
import { kvmIoctls } from '../dist/src/kvm/ioctls.js';

/** Test files whose runs start hypervisors and cards doing what they do for users. */
// (Not the tests that ptrace a jailed process to show that they cannot: under strace nothing can.)
const DEFAULT_WORKLOADS = [
  'dist/test/controller/card-jail.test.js', 'dist/test/controller/supervision.test.js', 'dist/test/controller/vpc-networks.test.js',
  'dist/test/control-plane/instances.test.js', 'dist/test/control-plane/stop.test.js', 'dist/test/cli/run.test.js',
  'dist/test/functional/vsock.test.js', 'dist/test/functional/net.test.js', 'dist/test/functional/disks.test.js',
];

/** Each jailed program: how its process is found (its entry in node's arguments), its thread roles and its file. */
const PROGRAMS = [
  { name: 'hypervisor', entry: '/dist/src/hypervisor/instance-main.js', roles: { io: /^azote-io$/ },
    ioctlRoles: ['io'], file: 'src/hypervisor/seccomp-profile.ts', constant: 'HYPERVISOR_SECCOMP' },
  { name: 'block card', entry: '/dist/src/cards/block/main.js', roles: {}, ioctlRoles: [],
    file: 'src/cards/block/seccomp-profile.ts', constant: 'BLOCK_CARD_SECCOMP' },
  { name: 'network card', entry: '/dist/src/cards/net/main.js', roles: {}, ioctlRoles: [],
    file: 'src/cards/net/seccomp-profile.ts', constant: 'NET_CARD_SECCOMP' },
];

/** The calls a program may keep although MUST_FAIL lists them, and why. */
const EXCEPTIONS = {
  'block card': { accept4: 'takes its frontends\' connections on the listening socket the controller made' },
  'network card': { accept4: 'takes its frontends\' connections on the listening socket the controller made' },
};

const workloads = process.argv.length > 2 ? process.argv.slice(2) : DEFAULT_WORKLOADS;
const syscallNumbers = new Map([...readFileSync('/usr/include/x86_64-linux-gnu/asm/unistd_64.h', 'utf8')
  .matchAll(/^#define __NR_(\w+) (\d+)$/gm)].map((m) => [m[1], Number(m[2])]));

// A failed run puts the lists back as they were (a first run leaves the permissive ones, which refuse MUST_FAIL only).
const originals = PROGRAMS.map((p) => (existsSync(p.file) ? readFileSync(p.file, 'utf8') : undefined));
const dir = mkdtempSync(path.join(tmpdir(), 'azote-seccomp-profile-'));
let done = false;
try {
  // Traced with lists that refuse only MUST_FAIL: the old lists would refuse what is new, and change what runs.
  for (const program of PROGRAMS) writeFileSync(program.file, render(program, permissive(program), ['(every call but MUST_FAIL)']));
  build();
  const trace = path.join(dir, 'trace');
  process.stderr.write(`seccomp-profile: tracing ${workloads.join(' ')} (several minutes)\n`);
  const r = spawnSync('strace', ['-f', '-qq', '-X', 'verbose', '-s', '256', '--pidns-translation', '-o', trace,
    process.execPath, '--test', '--test-concurrency=1', ...workloads], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error) throw new Error(`strace is needed: ${r.error.message} (apt-get install strace)`);
  if (r.status !== 0) throw new Error(`the traced tests failed (status ${r.status}): fix them first`);
  const seen = analyse(readFileSync(trace, 'utf8').split('\n'));
  for (const program of PROGRAMS) {
    const found = seen.get(program.name);
    if (!found || found.processes === 0) throw new Error(`no ${program.name} ran in ${workloads.join(' ')}`);
    for (const role of ['process', ...Object.keys(program.roles)]) {
      if (!found.roles.has(role)) throw new Error(`no thread of the ${program.name} had the role ${role}`);
    }
    writeFileSync(program.file, render(program, found, workloads));
    process.stderr.write(`seccomp-profile: ${program.file}: ${found.processes} processes, ${[...found.roles]
      .map(([role, calls]) => `${role} ${calls.syscalls.size} calls`).join(', ')}\n`);
  }
  build();
  done = true;
} finally {
  rmSync(dir, { recursive: true, force: true });
  if (!done) {
    PROGRAMS.forEach((p, i) => { if (originals[i] !== undefined) writeFileSync(p.file, originals[i]); });
    build();
  }
}

function build() {
  execFileSync('npx', ['tsc', '-p', '.'], { stdio: 'inherit' });
}

/** Lists that allow every call but MUST_FAIL's (save a program's exceptions), ioctl unrestricted. */
function permissive(program) {
  const role = () => ({ syscalls: new Set([...syscallNumbers.keys()].filter((n) => !(n in MUST_FAIL) || n in (EXCEPTIONS[program.name] ?? {}))),
    ioctls: undefined, refused: new Set() });
  return { processes: 0, roles: new Map(['process', ...Object.keys(program.roles)].map((r) => [r, role()])) };
}

function newRole() {
  return { syscalls: new Set(), ioctls: new Map(), refused: new Set() };
}

/**
 * Reads an `strace -f --pidns-translation` log in order: which thread belongs to which traced program, when each
 * filter went on, and what each thread called after it.
 */
function analyse(lines) {
  const programOf = new Map(); // tid -> { program, process } for the threads of traced programs
  const roleOf = new Map(); // tid -> role name, once the thread has its own filter
  const named = new Map(); // tid -> role its name gives it
  const filtered = new Set(); // processes whose process-wide filter is on
  const pending = new Map(); // tid -> the call left unfinished
  const results = new Map();
  const call = /^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$/;
  for (const line of lines) {
    const m = call.exec(line);
    if (!m) continue;
    const tid = Number(m[1]);
    const resumed = m[2] !== undefined;
    const name = m[2] ?? m[3];
    const rest = m[4];
    if (rest.endsWith('<unfinished ...>')) pending.set(tid, line);
    const whole = resumed ? `${pending.get(tid) ?? ''}${rest}` : line;
    if (resumed) pending.delete(tid);
    const finished = !rest.endsWith('<unfinished ...>');
    if (name === 'execve' && finished && / = 0$/.test(whole)) {
      const program = PROGRAMS.find((p) => new RegExp(`execve\\("[^"]*node", \\["[^"]*", "[^"]*${p.entry.replace(/[.]/g, '\\.')}"`).test(whole));
      if (program) {
        programOf.set(tid, { program, process: tid });
        if (!results.has(program.name)) results.set(program.name, { processes: 0, roles: new Map([['process', newRole()]]) });
        results.get(program.name).processes++;
      } else programOf.delete(tid);
      continue;
    }
    const owner = programOf.get(tid);
    if (!owner) continue;
    if (name === 'clone3' || name === 'clone') {
      if (!finished) continue;
      const child = /= \d+(?: \/\* (\d+) in strace's PID NS \*\/)?$/.exec(whole);
      if (child && /CLONE_THREAD/.test(whole)) programOf.set(Number(child[1]), owner);
    }
    if (name === 'prctl' && !resumed) {
      const thread = /PR_SET_NAME \*\/, "([^"]+)"/.exec(line)?.[1];
      const role = thread && Object.entries(owner.program.roles).find(([, re]) => re.test(thread))?.[0];
      if (role) named.set(tid, role);
    }
    if (name === 'seccomp' && !resumed) {
      if (/SECCOMP_FILTER_FLAG_TSYNC/.test(line)) filtered.add(owner.process);
      else if (named.has(tid)) roleOf.set(tid, named.get(tid));
    }
    if (resumed || !filtered.has(owner.process)) continue;
    const result = results.get(owner.program.name);
    const roles = ['process', ...(roleOf.has(tid) ? [roleOf.get(tid)] : [])];
    for (const role of roles) {
      if (!result.roles.has(role)) result.roles.set(role, newRole());
      const calls = result.roles.get(role);
      if (name in MUST_FAIL && !(name in (EXCEPTIONS[owner.program.name] ?? {}))) {
        calls.refused.add(name);
        continue;
      }
      calls.syscalls.add(name);
      if (name === 'ioctl') {
        const req = /^(?:\d+\s+)ioctl\(-?\d+, (0x[0-9a-f]+)(?: \/\* (\w+) \*\/)?/.exec(line);
        if (req) calls.ioctls.set(req[2] ?? `IOCTL_${req[1]}`, Number(req[1]));
      }
    }
  }
  return results;
}

function render(program, found, files) {
  const roles = [...found.roles].sort(([a], [b]) => (a === 'process' ? -1 : b === 'process' ? 1 : a.localeCompare(b)));
  const list = (calls, role) => {
    const syscalls = [...calls.syscalls].sort().map((n) => {
      const nr = syscallNumbers.get(n);
      if (nr === undefined) throw new Error(`${n}: not in <asm/unistd_64.h>`);
      return `${n}: ${nr}`;
    });
    const restrict = program.ioctlRoles.includes(role) && calls.ioctls !== undefined;
    const ioctls = [...(calls.ioctls ?? [])].sort(([a], [b]) => a.localeCompare(b)).map(([n, v]) => {
      if (n in kvmIoctls && kvmIoctls[n] !== v) throw new Error(`${n}: strace says 0x${v.toString(16)}, ioctls.ts says 0x${kvmIoctls[n].toString(16)}`);
      return `${n}: 0x${v.toString(16)}`;
    });
    const refused = [...calls.refused].sort();
    return `  ${role}: {${refused.length ? `\n    // Refused here as everywhere (MUST_FAIL), though attempted: ${refused.join(', ')}.` : ''}
    syscalls: {${wrap(syscalls)}},${restrict ? `\n    ioctls: {${wrap(ioctls)}},` : ''}
  },`;
  };
  const exceptions = Object.entries(EXCEPTIONS[program.name] ?? {});
  return `// The ${program.name}'s seccomp allowlists, by role. Generated by tools/seccomp-profile.js from strace of
// ${files.join(', ')}:
// edit nothing here, run the tool again.${exceptions.map(([n, why]) => `\n// It keeps ${n}, which MUST_FAIL lists, because it ${why}.`).join('')}
import type { SyscallAllowlist } from '${path.relative(path.dirname(program.file), 'src/sys/seccomp.js').replace(/^(?!\.)/, './')}';

export const ${program.constant}_EXCEPTIONS: readonly string[] = [${exceptions.map(([n]) => `'${n}'`).join(', ')}];

export const ${program.constant} = {
${roles.map(([role, calls]) => list(calls, role)).join('\n')}
} as const satisfies Record<string, SyscallAllowlist>;
`;
}

/** `items` as an object literal's body, a few to a line. */
function wrap(items) {
  const lines = [];
  for (let i = 0; i < items.length; i += 8) lines.push(`      ${items.slice(i, i + 8).join(', ')},`);
  return lines.length ? `\n${lines.join('\n')}\n    ` : '';
}
