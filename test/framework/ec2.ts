// The EC2 API for tests: `azote up` in this process on an ephemeral port and a fresh data directory, accounts,
// SDK clients, raw signed calls (to see the XML itself), and a check of our XML against the service model that
// @aws-sdk/client-ec2 carries (both clients accept malformed or misnamed XML silently).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as sdk from '@aws-sdk/client-ec2';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { silentLogger } from '../../src/base/log.js';
import { createAccount, type NewAccount } from '../../src/control-plane/accounts.js';
import { signSigV4 } from '../../src/control-plane/sigv4.js';
import { Store } from '../../src/control-plane/store.js';
import { up, type Up, type UpOptions } from '../../src/control-plane/up.js';

export const REGION = 'us-east-1';

export interface Ec2Host extends Up {
  readonly dataDir: string;
  account(name: string): NewAccount;
  client(a: NewAccount): sdk.EC2Client;
  /** Stops `azote up` and removes its data directory. */
  dispose(): Promise<void>;
}

export async function startEc2(dataDir = mkdtempSync(path.join(tmpdir(), 'azote-ec2-')), o: Partial<Pick<UpOptions, 'shareCoresWithinAccount' | 'uplinks' | 'limits' | 'diskOvercommit' | 'forgetTerminatedAfterMs' | 'log' | 'apiLimits'>> = {}): Promise<Ec2Host> {
  const running = await up({ dataDir, host: '127.0.0.1', port: 0, region: REGION, uplinks: true, log: silentLogger, ...o });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await running.close();
  };
  return {
    endpoint: running.endpoint, capacity: running.capacity, dataDir, close,
    account(name) {
      const store = new Store(dataDir);
      try {
        return createAccount(store, dataDir, name);
      } finally {
        store.close();
      }
    },
    client(a) {
      return new sdk.EC2Client({
        endpoint: running.endpoint, region: REGION, maxAttempts: 1,
        credentials: { accessKeyId: a.accessKeyId, secretAccessKey: a.secretAccessKey },
      });
    },
    async dispose() {
      await close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface RawAnswer {
  readonly status: number;
  readonly requestId: string | null;
  readonly body: string;
}

/** A form-encoded POST signed with `a`'s key (or as `sign` changes it). */
export async function rawCall(endpoint: string, a: Pick<NewAccount, 'accessKeyId' | 'secretAccessKey'>, params: Record<string, string>,
  o: { now?: Date; body?: string; headers?: Record<string, string> } = {}): Promise<RawAnswer> {
  const body = o.body ?? new URLSearchParams({ Version: '2016-11-15', ...params }).toString();
  const url = new URL(endpoint);
  const headers: Record<string, string> = { host: url.host, 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' };
  const signed = signSigV4({ method: 'POST', url: '/', headers, body: Buffer.from(body) }, 'ec2', REGION, a.accessKeyId, a.secretAccessKey, o.now ?? new Date());
  const r = await fetch(endpoint, { method: 'POST', headers: { ...headers, ...signed, ...o.headers }, body });
  return { status: r.status, requestId: r.headers.get('x-amzn-requestid'), body: await r.text() };
}

type Schema = unknown;
interface Node { readonly name: string; readonly children: Node[]; readonly text: string }

function toTree(xml: string): Node {
  assert.equal(XMLValidator.validate(xml), true, `not well-formed XML: ${xml.slice(0, 300)}`);
  const parsed = new XMLParser({ preserveOrder: true, ignoreAttributes: false, parseTagValue: false, trimValues: false }).parse(xml) as unknown[];
  const convert = (entry: Record<string, unknown>): Node | undefined => {
    const name = Object.keys(entry).find((k) => k !== ':@' && k !== '?xml');
    if (!name || name === '#text') return undefined;
    const kids = (entry[name] as Array<Record<string, unknown>>) ?? [];
    const text = kids.filter((k) => '#text' in k).map((k) => String(k['#text'])).join('');
    return { name, text, children: kids.map(convert).filter((n): n is Node => n !== undefined) };
  };
  const root = (parsed as Array<Record<string, unknown>>).map(convert).find((n) => n !== undefined);
  assert.ok(root, 'no root element');
  return root;
}

const resolve = (s: Schema): Schema => (typeof s === 'function' ? (s as () => Schema)() : s);

/** Checks `node` (an element of shape `schema`) member by member; returns the problems found. */
function check(node: Node, schema: Schema, where: string, problems: string[]): void {
  const s = resolve(schema);
  if (typeof s === 'number') {
    const t = node.text;
    if (node.children.length > 0) problems.push(`${where}: a value was expected, found elements`);
    else if (s === 1 && !/^-?\d+(\.\d+)?$/.test(t)) problems.push(`${where}: "${t}" is not a number`);
    else if (s === 2 && t !== 'true' && t !== 'false') problems.push(`${where}: "${t}" is not a boolean`);
    else if (s === 4 && Number.isNaN(Date.parse(t))) problems.push(`${where}: "${t}" is not a timestamp`);
    return;
  }
  if (!Array.isArray(s)) return;
  const kind = s[0] as number;
  if (kind === 1) {
    const [member] = s[4] as [Schema, Record<string, string>];
    for (const [i, child] of node.children.entries()) {
      if (child.name !== 'item') problems.push(`${where}: list entries are <item>, found <${child.name}>`);
      check(child, member, `${where}[${i}]`, problems);
    }
    return;
  }
  if (kind === 3) {
    const names = s[4] as string[];
    const members = s[5] as Array<Schema | [Schema, Record<string, string>]>;
    const byXml = new Map<string, Schema>();
    names.forEach((n, i) => {
      const m = members[i];
      const [type, traits] = Array.isArray(m) && (m.length === 2 && typeof m[1] === 'object' && !Array.isArray(m[1]) && m[1] !== null) ? m as [Schema, Record<string, string>] : [m, {}];
      byXml.set(traits['xmlName'] ?? n.charAt(0).toLowerCase() + n.slice(1), type);
    });
    for (const child of node.children) {
      const type = byXml.get(child.name);
      if (type === undefined) problems.push(`${where}: <${child.name}> is not a member of ${String(s[2])}`);
      else check(child, type, `${where}.${child.name}`, problems);
    }
  }
}

/** Asserts that a success response is well-formed and every element is where the service model puts it. */
export function assertMatchesModel(action: string, xml: string): void {
  const root = toTree(xml);
  assert.equal(root.name, `${action}Response`);
  const op = (sdk as unknown as Record<string, unknown>)[`${action}$`];
  assert.ok(Array.isArray(op), `the SDK has no operation ${action}`);
  const output = resolve((op as unknown[])[5]);
  const problems: string[] = [];
  check({ ...root, children: root.children.filter((c) => c.name !== 'requestId') }, output, action, problems);
  assert.ok(root.children.some((c) => c.name === 'requestId' && c.text.length > 0), 'a requestId element');
  assert.deepEqual(problems, [], `${action}: our XML does not match the service model`);
}

/** Asserts that an error response has EC2's form and the given code. */
export function assertEc2Error(answer: RawAnswer, status: number, code: string): void {
  const root = toTree(answer.body);
  assert.equal(answer.status, status, answer.body);
  assert.equal(root.name, 'Response');
  const errors = root.children.find((c) => c.name === 'Errors');
  const error = errors?.children.find((c) => c.name === 'Error');
  assert.equal(error?.children.find((c) => c.name === 'Code')?.text, code, answer.body);
  assert.ok((error?.children.find((c) => c.name === 'Message')?.text.length ?? 0) > 0, 'a message');
  assert.equal(root.children.find((c) => c.name === 'RequestID')?.text, answer.requestId, 'the request id, in the body and the header');
}
