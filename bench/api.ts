// EC2 API benchmark: `azote up` in its own process, an account, and
//   DescribeInstances over 100 instance records (launched through RunInstances and terminated before their VMs
//   started: real records made by the API, each with a reservation, tags and a key name), signed requests from this
//   process with BENCH_API_CONCURRENCY in flight for BENCH_API_SECONDS: requests per second, p50 and p99 latency;
//   DescribeRegions the same way, the floor of HTTP + SigV4 + XML on this machine, as the reference;
//   DescribeKeyPairs with a hostile wildcard filter (`*a*a*a*a*b` over a 255-character key name, which held the event
//   loop for 79 s when filters were backtracking regular expressions) the same way;
//   RunInstances to running (the guest's init started, as DescribeInstances reports it), BENCH_API_BOOTS times,
//   beside `azote run --image default -- true` (the same image booted without the control plane) as the reference.
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { signSigV4 } from '../src/control-plane/sigv4.js';
import { projectRoot } from '../src/images/paths.js';
import { envInt, say } from './common.js';
import { makeTempDir, removeTempDir, runSync, TimedChild, withChild } from './proc.js';
import { renderMetric, summarize, type MetricResult } from './stats.js';

const RECORDS = 100;
const REGION = 'us-east-1';

export interface ApiReport {
  readonly cores: number;
  readonly metrics: MetricResult[];
}

interface Creds { readonly accessKeyId: string; readonly secretAccessKey: string }

function client(endpoint: string, creds: Creds) {
  const url = new URL(endpoint);
  return async (params: Record<string, string>): Promise<string> => {
    const body = new URLSearchParams({ Version: '2016-11-15', ...params }).toString();
    const headers: Record<string, string> = { host: url.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' };
    const signed = signSigV4({ method: 'POST', url: '/', headers, body: Buffer.from(body) }, 'ec2', REGION, creds.accessKeyId, creds.secretAccessKey, new Date());
    const r = await fetch(endpoint, { method: 'POST', headers: { ...headers, ...signed }, body });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`${params['Action'] ?? '?'}: HTTP ${r.status}: ${text.slice(0, 300)}`);
    return text;
  };
}

/** Requests per second and each request's latency, `concurrency` at a time for `seconds`. */
async function load(call: () => Promise<unknown>, concurrency: number, seconds: number): Promise<{ rps: number; latencies: number[] }> {
  const latencies: number[] = [];
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await call();
      latencies.push(performance.now() - t0);
    }
  }));
  return { rps: latencies.length / ((performance.now() - started) / 1000), latencies };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export async function runApi(): Promise<ApiReport> {
  const concurrency = envInt('BENCH_API_CONCURRENCY', 8);
  const seconds = envInt('BENCH_API_SECONDS', 5);
  const boots = envInt('BENCH_API_BOOTS', 3);
  const cores = availableParallelism();
  const root = projectRoot();
  const azote = path.join(root, 'bin', 'azote.js');
  const dataDir = makeTempDir('azote-bench-api-');
  try {
    // The per-account throttle (EC2's 100/20 and 50/5 buckets) is opened wide: this measures what the API can serve.
    const unthrottled = ['--api-rate-describe', '1000000/1000000', '--api-rate-mutate', '1000000/1000000'];
    return await withChild([process.execPath, azote, 'up', '--data-dir', dataDir, '--port', '0', ...unthrottled],
      { label: 'azote up', timeoutMs: 3_600_000, env: { ...process.env, AZOTE_LOG_LEVEL: 'info' } }, async (server) => {
        const endpoint = (await server.waitFor('stdout', /EC2 API at (http:\/\/[\d.:]+)/)).match[1] ?? '';
        const env = runSync([process.execPath, azote, 'account', 'create', 'bench', '--data-dir', dataDir], 'creating the account');
        const creds: Creds = {
          accessKeyId: /AWS_ACCESS_KEY_ID=(\S+)/.exec(env)?.[1] ?? '', secretAccessKey: /AWS_SECRET_ACCESS_KEY=(\S+)/.exec(env)?.[1] ?? '',
        };
        const call = client(endpoint, creds);
        const images = await call({ Action: 'DescribeImages', 'Filter.1.Name': 'name', 'Filter.1.Value.1': 'default' });
        const ami = /<imageId>(ami-[0-9a-f]+)<\/imageId>/.exec(images)?.[1];
        if (!ami) throw server.error('has no default image (run `node bin/azote.js image build`)');
        await call({ Action: 'CreateKeyPair', KeyName: 'bench', KeyType: 'ed25519' });
        await call({ Action: 'CreateKeyPair', KeyName: 'a'.repeat(255), KeyType: 'ed25519' });

        say(`\napi benchmark: azote up on ${cores} cores; ${RECORDS} instance records; ${concurrency} requests in flight for ${seconds} s per action`);
        for (let made = 0; made < RECORDS; made += 2) {
          const run = await call({ Action: 'RunInstances', ImageId: ami, InstanceType: 't3.nano', MinCount: '2', MaxCount: '2', KeyName: 'bench',
            'TagSpecification.1.ResourceType': 'instance', 'TagSpecification.1.Tag.1.Key': 'bench', 'TagSpecification.1.Tag.1.Value': String(made) });
          const ids = [...run.matchAll(/<instanceId>(i-[0-9a-f]+)<\/instanceId>/g)].map((m) => m[1] ?? '');
          await call({ Action: 'TerminateInstances', ...Object.fromEntries(ids.map((id, i) => [`InstanceId.${i + 1}`, id])) });
          for (;;) {
            const d = await call({ Action: 'DescribeInstances', 'Filter.1.Name': 'instance-state-name', 'Filter.1.Value.1': 'shutting-down' });
            if (!d.includes('<instanceId>')) break;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        const all = await call({ Action: 'DescribeInstances' });
        const count = [...all.matchAll(/<instanceId>/g)].length;
        if (count !== RECORDS) throw server.error(`holds ${count} instance records, not ${RECORDS}`);
        say(`  ${RECORDS} records made through RunInstances + TerminateInstances; DescribeInstances answers ${(all.length / 1024).toFixed(0)} KiB`);

        const metrics: MetricResult[] = [];
        const describe = await load(() => call({ Action: 'DescribeInstances' }), concurrency, seconds);
        const regions = await load(() => call({ Action: 'DescribeRegions' }), concurrency, seconds);
        const hostile = await load(() => call({ Action: 'DescribeKeyPairs', 'Filter.1.Name': 'key-name', 'Filter.1.Value.1': '*a*a*a*a*b' }),
          concurrency, seconds);
        for (const [id, title, unit, pick] of [
          ['api-throughput', 'requests per second (higher is better)', 'req/s', (r: typeof describe) => [r.rps]],
          ['api-latency-p50', 'latency, median', 'ms', (r: typeof describe) => [percentile([...r.latencies].sort((a, b) => a - b), 50)]],
          ['api-latency-p99', 'latency, 99th percentile', 'ms', (r: typeof describe) => [percentile([...r.latencies].sort((a, b) => a - b), 99)]],
        ] as const) {
          const { text, result } = renderMetric({
            id, title: `${title}, ${concurrency} in flight`, unit, baseline: 'DescribeRegions (reference)',
            rows: [{ name: `DescribeInstances, ${RECORDS} records`, samples: pick(describe) },
              { name: 'DescribeKeyPairs, hostile filter', samples: pick(hostile) }, { name: 'DescribeRegions (reference)', samples: pick(regions) }],
            notes: id === 'api-throughput' ? [`${describe.latencies.length}, ${hostile.latencies.length} and ${regions.latencies.length} requests; the reference is the floor of HTTP, SigV4 and XML here`,
              'the hostile filter is *a*a*a*a*b over a 255-character key name (a backtracking matcher took 79 s for one such call)'] : [],
          });
          say(`\n${text}`);
          metrics.push(result);
        }

        const launch: number[] = [];
        const direct: number[] = [];
        for (let i = 0; i < boots; i++) {
          const t0 = performance.now();
          const run = await call({ Action: 'RunInstances', ImageId: ami, InstanceType: 't3.nano', MinCount: '1', MaxCount: '1' });
          const id = /<instanceId>(i-[0-9a-f]+)<\/instanceId>/.exec(run)?.[1] ?? '';
          for (;;) {
            const d = await call({ Action: 'DescribeInstances', 'InstanceId.1': id });
            if (d.includes('<name>running</name>')) break;
            if (performance.now() - t0 > 600_000) throw server.error(`instance ${id} did not reach running`);
            await new Promise((r) => setTimeout(r, 100));
          }
          launch.push((performance.now() - t0) / 1000);
          await call({ Action: 'TerminateInstances', 'InstanceId.1': id });
          const c = TimedChild.start([process.execPath, azote, 'run', '--image', 'default', '--boot-time', '--', 'true'], { label: 'azote run --image', timeoutMs: 600_000 });
          const m = await c.waitFor('stderr', /init reached ([\d.]+) ms/);
          await c.expectExit(0);
          direct.push(Number(m.match[1]) / 1000);
          say(`  boot ${i + 1}/${boots}: RunInstances to running ${launch.at(-1)?.toFixed(2)} s; azote run --image to init ${direct.at(-1)?.toFixed(2)} s`);
        }
        const { text, result } = renderMetric({
          id: 'api-run-to-running', title: 'RunInstances to running (the guest\'s init started), lower is better', unit: 's',
          baseline: 'azote run --image default (reference)',
          rows: [{ name: 'RunInstances -> running', samples: launch }, { name: 'azote run --image default (reference)', samples: direct }],
          notes: ['the reference boots the same image with no control plane: process start to init, as the guest reports it',
            `median difference ${(summarize(launch).median - summarize(direct).median).toFixed(2)} s: disk copy and resize, metadata, card start, polling`],
        }, 2);
        say(`\n${text}`);
        metrics.push(result);
        return { cores, metrics };
      });
  } finally {
    removeTempDir(dataDir);
  }
}
