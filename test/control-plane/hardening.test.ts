// The EC2 API under hostile or unlucky callers: a filter crafted to backtrack answers at once and holds up no one
// else, one account's burst is throttled with EC2's RequestLimitExceeded, a request without Host is refused, and a
// client that never finishes its headers is disconnected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_SERVER_LIMITS } from '../../src/control-plane/server.js';
import { signSigV4 } from '../../src/control-plane/sigv4.js';
import { assertEc2Error, rawCall, REGION, startEc2, type Ec2Host, type RawAnswer } from '../framework/ec2.js';
import { useOwnNetworkNamespace } from '../framework/netns.js';

useOwnNetworkNamespace();

/** Only detects a hang: the calls below take milliseconds when the event loop is free. */
const HANG_MS = 5000;

/** Small buckets and a short header time, so that the tests reach them quickly. */
const LIMITS = {
  ...DEFAULT_SERVER_LIMITS,
  throttle: { describe: { burst: 20, perSecond: 4 }, mutate: { burst: 10, perSecond: 2 } },
  headersTimeoutMs: 1000, requestTimeoutMs: 5000, maxConnections: 8,
};

let host: Ec2Host;
test.before(async () => { host = await startEc2(undefined, { apiLimits: LIMITS }); });
test.after(async () => { await host.dispose(); });

test('a hostile wildcard filter answers at once, and another account\'s call sent meanwhile is not held up', async () => {
  const attacker = host.account('hostile');
  const bystander = host.account('bystander');
  const name = 'a'.repeat(255);
  const created = await rawCall(host.endpoint, attacker, { Action: 'CreateKeyPair', KeyName: name, KeyType: 'ed25519' });
  assert.equal(created.status, 200, created.body);
  const sent = Date.now();
  const hostile = rawCall(host.endpoint, attacker, { Action: 'DescribeKeyPairs', 'Filter.1.Name': 'key-name', 'Filter.1.Value.1': '*a*a*a*a*b' });
  const regions = rawCall(host.endpoint, bystander, { Action: 'DescribeRegions' });
  const [h, r] = await Promise.all([hostile, regions]);
  const elapsed = Date.now() - sent;
  assert.equal(h.status, 200, h.body);
  assert.doesNotMatch(h.body, /<keyName>/, 'no name ends in b');
  assert.equal(r.status, 200, r.body);
  assert.ok(elapsed < HANG_MS, `both answered ${elapsed} ms after they were sent: the event loop was held`);
});

test('filters beyond EC2\'s limits are refused with FilterLimitExceeded or InvalidParameterValue, naming the limit', async () => {
  const a = host.account('filter-limits');
  const tooManyFilters = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [[`Filter.${i + 1}.Name`, 'key-name'], [`Filter.${i + 1}.Value.1`, 'x']]).flat());
  const r1 = await rawCall(host.endpoint, a, { Action: 'DescribeKeyPairs', ...tooManyFilters });
  assertEc2Error(r1, 400, 'FilterLimitExceeded');
  assert.match(r1.body, /at most 50/);
  // 200 values are allowed in all filters together, not in each.
  const values = (filter: number, n: number): Record<string, string> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`Filter.${filter}.Value.${i + 1}`, 'x']));
  const fine = await rawCall(host.endpoint, a, { Action: 'DescribeKeyPairs', 'Filter.1.Name': 'key-name', ...values(1, 200) });
  assert.equal(fine.status, 200, fine.body);
  const r2 = await rawCall(host.endpoint, a, {
    Action: 'DescribeKeyPairs', 'Filter.1.Name': 'key-name', ...values(1, 150), 'Filter.2.Name': 'key-type', ...values(2, 51),
  });
  assertEc2Error(r2, 400, 'FilterLimitExceeded');
  assert.match(r2.body, /on a single call is 200; this one has 201/);
  const r3 = await rawCall(host.endpoint, a, { Action: 'DescribeTags', 'Filter.1.Name': 'value', 'Filter.1.Value.1': '*?'.repeat(17) });
  assertEc2Error(r3, 400, 'InvalidParameterValue');
  assert.match(r3.body, /at most 32/);
  const r4 = await rawCall(host.endpoint, a, { Action: 'DescribeTags', 'Filter.1.Name': 'value', 'Filter.1.Value.1': 'x'.repeat(257) });
  assertEc2Error(r4, 400, 'InvalidParameterValue');
  assert.match(r4.body, /at most 256/);
});

test('an account\'s burst is answered RequestLimitExceeded (503) beyond its bucket, which refills; other accounts are not held back', async () => {
  const busy = host.account('throttled');
  const calm = host.account('not-throttled');
  const answers: RawAnswer[] = [];
  for (let i = 0; i < LIMITS.throttle.describe.burst + 10; i++) answers.push(await rawCall(host.endpoint, busy, { Action: 'DescribeRegions' }));
  const refused = answers.filter((r) => r.status !== 200);
  assert.ok(refused.length > 0, 'calls beyond the burst are refused');
  for (const r of refused) assertEc2Error(r, 503, 'RequestLimitExceeded');
  assert.equal((await rawCall(host.endpoint, calm, { Action: 'DescribeRegions' })).status, 200, 'another account has its own bucket');
  // Mutating calls have a bucket of their own, still full.
  const mutate = await rawCall(host.endpoint, busy, { Action: 'DeleteKeyPair', KeyName: 'none' });
  assert.equal(mutate.status, 200, mutate.body);
  let again: RawAnswer;
  const deadline = Date.now() + 20_000;
  do {
    await sleep(250);
    again = await rawCall(host.endpoint, busy, { Action: 'DescribeRegions' });
  } while (again.status !== 200 && Date.now() < deadline);
  assert.equal(again.status, 200, 'the bucket refills');
});

/** Sends `request` on a plain TCP connection and gives what came back until the server closed it. */
function exchange(endpoint: string, request: string | undefined, trickle?: string): Promise<{ reply: string; closed: boolean }> {
  const url = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let reply = '';
    let timer: NodeJS.Timeout | undefined;
    const hang = setTimeout(() => { clearInterval(timer); socket.destroy(); resolve({ reply, closed: false }); }, 20_000);
    socket.on('connect', () => {
      if (request !== undefined) socket.write(request);
      if (trickle !== undefined) timer = setInterval(() => socket.write(trickle), 200);
    });
    socket.on('data', (b: Buffer) => { reply += b.toString('latin1'); });
    socket.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'ECONNRESET') reject(e); });
    socket.on('close', () => { clearTimeout(hang); clearInterval(timer); resolve({ reply, closed: true }); });
  });
}

/** The status, request id and body of a raw HTTP/1.x answer. */
function parseAnswer(reply: string): RawAnswer {
  const [head = '', body = ''] = reply.split('\r\n\r\n', 2);
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1]);
  const requestId = /^x-amzn-requestid: *(.*)$/im.exec(head)?.[1]?.trim() ?? null;
  return { status, requestId, body };
}

test('a request without a Host header is refused with 400, even correctly signed over HTTP/1.0', async () => {
  const a = host.account('no-host');
  const body = new URLSearchParams({ Version: '2016-11-15', Action: 'DescribeRegions' }).toString();
  const headers = { host: '', 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' };
  const signed = signSigV4({ method: 'POST', url: '/', headers, body: Buffer.from(body) }, 'ec2', REGION, a.accessKeyId, a.secretAccessKey, new Date());
  for (const version of ['1.0', '1.1']) {
    const request = [`POST / HTTP/${version}`, `content-type: ${headers['content-type']}`, `x-amz-date: ${signed['x-amz-date'] ?? ''}`,
      `authorization: ${signed.authorization ?? ''}`, `content-length: ${Buffer.byteLength(body)}`, 'connection: close', '', body].join('\r\n');
    const { reply } = await exchange(host.endpoint, request);
    const answer = parseAnswer(reply);
    assertEc2Error(answer, 400, 'InvalidRequest');
    assert.match(answer.body, /Host header/, `HTTP/${version}`);
  }
});

test('a client that never finishes its headers is disconnected, and the server still answers others', async () => {
  const slow = await exchange(host.endpoint, 'POST / HTTP/1.1\r\nhost: x\r\n', 'x-slow: 1\r\n');
  assert.ok(slow.closed, 'the slow client was cut off');
  const a = host.account('after-slow');
  assert.equal((await rawCall(host.endpoint, a, { Action: 'DescribeRegions' })).status, 200);
});

/** A connection that has made one keep-alive request and now waits idle, or undefined if the server dropped it. */
function idleConnection(endpoint: string): Promise<{ socket: net.Socket; closed: Promise<void> } | undefined> {
  const url = new URL(endpoint);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname);
    let reply = '';
    const closed = new Promise<void>((done) => socket.on('close', () => { done(); resolve(undefined); }));
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
    socket.on('data', (b: Buffer) => {
      reply += b.toString('latin1');
      if (/\r\n\r\n[^]*<\/Response>/.test(reply)) resolve({ socket, closed });
    });
    socket.on('error', (e: NodeJS.ErrnoException) => { if (e.code !== 'ECONNRESET') reject(e); });
  });
}

test('connections beyond the cap are refused; idle keep-alive ones then give way, and the server answers again', async () => {
  const held: Array<{ socket: net.Socket; closed: Promise<void> }> = [];
  try {
    let dropped = false;
    // Keep-alive connections of earlier calls may hold some of the places already.
    for (let i = 0; i <= LIMITS.maxConnections && !dropped; i++) {
      const c = await idleConnection(host.endpoint);
      if (c) held.push(c);
      else dropped = true;
    }
    assert.ok(dropped, `a connection beyond the ${LIMITS.maxConnections} open ones was refused`);
    await Promise.race([Promise.all(held.map((c) => c.closed)), sleep(HANG_MS).then(() => assert.fail('idle connections were not let go'))]);
    const a = host.account('after-cap');
    assert.equal((await rawCall(host.endpoint, a, { Action: 'DescribeRegions' })).status, 200);
  } finally {
    for (const c of held) c.socket.destroy();
  }
});
