// The EC2 endpoint: HTTP on the given address. Every request is signed (SigV4, header form) by an account's access
// key; its parameters come form-encoded in a POST body (or in the query of a GET). Answers are EC2 XML with the
// request id in the body and in x-amzn-requestid; every failure is an EC2 error, never a stack trace.
import http from 'node:http';
import type { Logger } from '../base/log.js';
import { unseal } from './accounts.js';
import { Ec2Api } from './api.js';
import { Ec2Error } from './errors.js';
import { newRequestId } from './ids.js';
import { QueryParams } from './query.js';
import { verifySigV4 } from './sigv4.js';
import { Throttle, DEFAULT_THROTTLE, type ThrottleLimits } from './throttle.js';
import { errorXml, responseXml } from './xml.js';

/** The largest request body accepted (RunInstances with 16 KiB of user data is far below it). */
export const MAX_BODY = 256 * 1024;

/** What one caller can hold of the server: Node's defaults (no connection cap, 300 s to send a request) let a few
 * slow clients take it. */
export interface ServerLimits {
  readonly throttle: ThrottleLimits;
  /** Open connections at most; beyond it new ones are closed at once, after idle keep-alive ones are let go. */
  readonly maxConnections: number;
  /** Time to send a request's headers, and the whole request. */
  readonly headersTimeoutMs: number;
  readonly requestTimeoutMs: number;
}

export const DEFAULT_SERVER_LIMITS: ServerLimits = { throttle: DEFAULT_THROTTLE, maxConnections: 256, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000 };

export interface ServerOptions {
  readonly api: Ec2Api;
  readonly sealingKey: Buffer;
  readonly log: Logger;
  readonly limits?: ServerLimits | undefined;
}

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > MAX_BODY) {
      reject(new Ec2Error('RequestEntityTooLarge', `Request bodies are limited to ${MAX_BODY} bytes`, 413));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_BODY) {
        reject(new Ec2Error('RequestEntityTooLarge', `Request bodies are limited to ${MAX_BODY} bytes`, 413));
        req.destroy();
        return;
      }
      parts.push(b);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

/** Idle connections are kept longer than clients keep them (undici 4 s, the AWS SDKs and CLI less than a minute), so
 * that a client never reuses a connection the server is closing at that moment. */
const KEEP_ALIVE_MS = 65_000;
/** How often Node looks for connections past their header or request time (its default, 30 s, would triple them). */
const TIMEOUT_CHECK_MS = 1000;

export function createEc2Server(o: ServerOptions): http.Server {
  const { api, log } = o;
  const limits = o.limits ?? DEFAULT_SERVER_LIMITS;
  const throttle = new Throttle(limits.throttle);
  const serverOptions: http.ServerOptions = {
    headersTimeout: limits.headersTimeoutMs, requestTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: TIMEOUT_CHECK_MS,
    keepAliveTimeout: KEEP_ALIVE_MS,
    // Node would refuse an HTTP/1.1 request without Host with a bare 400 but let an HTTP/1.0 one through: the handler
    // refuses both, in EC2's form.
    requireHostHeader: false,
  };
  const server = http.createServer(serverOptions, (req, res) => {
    const requestId = newRequestId();
    const started = performance.now();
    const send = (status: number, body: string): void => {
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': requestId, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    void (async () => {
      let action = '?';
      try {
        if (req.method !== 'POST' && req.method !== 'GET') throw new Ec2Error('InvalidAction', `Method ${req.method ?? ''} is not supported`, 405);
        if (!req.headers.host) {
          throw new Ec2Error('InvalidRequest', 'The request has no Host header: the SigV4 signature covers it; send the endpoint\'s host[:port] as Host');
        }
        const body = await readBody(req);
        const verified = verifySigV4({ method: req.method, url: req.url ?? '/', headers: req.headers, body }, 'ec2', api.region, new Date(),
          (key) => {
            const a = api.store.accountByKey(key);
            return a ? unseal(o.sealingKey, a.sealed_secret) : undefined;
          });
        const account = api.store.accountByKey(verified.accessKeyId);
        if (!account) throw new Ec2Error('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
        const query = (req.url ?? '').split('?')[1] ?? '';
        const params = QueryParams.parse(req.method === 'GET' ? query : body.toString('utf8'));
        action = params.optional('Action') ?? '';
        if (!action) throw new Ec2Error('MissingAction', 'The request must contain the parameter Action');
        throttle.admit(account.id, action);
        const result = await api.dispatch(action, params, account);
        send(200, responseXml(action, requestId, result));
        log.debug('ec2 request', { action, account: account.name, status: 200, ms: Math.round(performance.now() - started) });
      } catch (e) {
        if (e instanceof Ec2Error) {
          log.info('ec2 request refused', { action, code: e.code, status: e.status, requestId });
          if (!res.headersSent) send(e.status, errorXml(e.code, e.message, requestId));
          return;
        }
        log.error('ec2 request failed', { action, requestId, error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
        if (!res.headersSent) send(500, errorXml('InternalError', 'An internal error has occurred', requestId));
      }
    })();
  });
  server.maxConnections = limits.maxConnections;
  // At the cap, connections that wait idle for a next request give way to new ones: only requests in progress,
  // which their timeouts bound, can hold the server.
  server.on('drop', () => server.closeIdleConnections());
  return server;
}
