// AWS Signature Version 4, header form (the AWS General Reference, "Create a signed AWS API request"): the request
// is put in canonical form, hashed into a string to sign scoped to date/region/service, and signed with a key
// derived from the secret by HMAC-SHA256. We recompute the signature from the request as received and compare.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { Ec2Error } from './errors.js';

export const ALGORITHM = 'AWS4-HMAC-SHA256';
/** How far a request's date may be from our clock. */
export const MAX_SKEW_MS = 5 * 60_000;

export interface SignedRequest {
  readonly method: string;
  /** The path and query as received (still percent-encoded). */
  readonly url: string;
  /** Header values by lower-case name (Node's IncomingMessage.headers). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

export interface Verified {
  readonly accessKeyId: string;
  readonly region: string;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** RFC 3986 percent-encoding, as SigV4 wants it: everything but unreserved characters. */
export function uriEncode(s: string, keepSlash = false): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(keepSlash ? /%2F/g : /$^/, '/');
}

export function signingKey(secret: string, date: string, region: string, service: string): Buffer {
  return hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
}

function header(req: SignedRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** The canonical request for the headers in `signed` (lower-case names, sorted). */
export function canonicalRequest(req: SignedRequest, signed: readonly string[], payloadHash: string): string {
  const q = req.url.indexOf('?');
  const rawPath = q >= 0 ? req.url.slice(0, q) : req.url;
  const query = q >= 0 ? req.url.slice(q + 1) : '';
  let path: string;
  try {
    path = uriEncode(decodeURIComponent(rawPath || '/'), true);
  } catch {
    throw new Ec2Error('SignatureDoesNotMatch', 'The request path is not valid percent-encoding', 403);
  }
  const pairs = [...new URLSearchParams(query)].map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0));
  const headers = signed.map((h) => `${h}:${(header(req, h) ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
  return [req.method, path, pairs.map(([k, v]) => `${k}=${v}`).join('&'), headers, signed.join(';'), payloadHash].join('\n');
}

/** "20261123T101500Z" to a Date; undefined if malformed. */
export function parseAmzDate(s: string): Date | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  if (!m) return undefined;
  const d = new Date(Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * Verifies the request's signature; `secretOf` gives the secret of an access key id (undefined for an unknown one).
 * Throws the EC2 error a real endpoint gives for each failure.
 */
export function verifySigV4(req: SignedRequest, service: string, region: string, now: Date,
  secretOf: (accessKeyId: string) => string | undefined): Verified {
  const auth = header(req, 'authorization');
  if (!auth) throw new Ec2Error('MissingAuthenticationToken', 'Request is missing Authentication Token', 401);
  const m = /^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\s*$/.exec(auth);
  if (!m) {
    throw new Ec2Error('IncompleteSignature', `Authorization header requires Credential, SignedHeaders and Signature (${ALGORITHM})`, 400);
  }
  const [, credential, signedList, signature] = m as unknown as [string, string, string, string];
  const scope = credential.split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request') {
    throw new Ec2Error('IncompleteSignature', 'Credential must be ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request', 400);
  }
  const [accessKeyId, date, scopeRegion, scopeService] = scope as [string, string, string, string];
  const amzDate = header(req, 'x-amz-date');
  const when = amzDate === undefined ? undefined : parseAmzDate(amzDate);
  if (!when || !amzDate) throw new Ec2Error('IncompleteSignature', 'The request must carry an X-Amz-Date header (YYYYMMDDTHHMMSSZ)', 400);
  if (Math.abs(now.getTime() - when.getTime()) > MAX_SKEW_MS) {
    throw new Ec2Error('RequestExpired', `Request has expired: its date ${amzDate} is more than 5 minutes from the server's`, 400);
  }
  const secret = secretOf(accessKeyId);
  if (secret === undefined) throw new Ec2Error('AuthFailure', 'AWS was not able to validate the provided access credentials', 401);
  if (date !== amzDate.slice(0, 8)) {
    throw new Ec2Error('SignatureDoesNotMatch', `Credential date ${date} does not match the request date ${amzDate.slice(0, 8)}`, 403);
  }
  if (scopeService !== service || scopeRegion !== region) {
    throw new Ec2Error('AuthFailure', `Credential should be scoped to region ${region} and service ${service}, not ${scopeRegion}/${scopeService}`, 401);
  }
  const signed = signedList.split(';');
  if (!signed.includes('host') || signed.some((h, i) => h !== h.toLowerCase() || (i > 0 && signed[i - 1]! >= h))) {
    throw new Ec2Error('SignatureDoesNotMatch', 'SignedHeaders must be lower case, sorted, and include host', 403);
  }
  const bodyHash = sha256(req.body);
  const claimed = header(req, 'x-amz-content-sha256');
  if (claimed !== undefined && claimed !== bodyHash) {
    throw new Ec2Error('SignatureDoesNotMatch', 'The x-amz-content-sha256 header does not match the body', 403);
  }
  const canonical = canonicalRequest(req, signed, bodyHash);
  const stringToSign = [ALGORITHM, amzDate, `${date}/${region}/${service}/aws4_request`, sha256(canonical)].join('\n');
  const expected = hmac(signingKey(secret, date, region, service), stringToSign);
  if (!timingSafeEqual(expected, Buffer.from(signature, 'hex'))) {
    throw new Ec2Error('SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.', 403);
  }
  return { accessKeyId, region };
}

/** Signs a request (tests and tools that speak to the API without an SDK). Returns the headers to add. */
export function signSigV4(req: Omit<SignedRequest, 'headers'> & { headers: Record<string, string> }, service: string,
  region: string, accessKeyId: string, secret: string, now: Date): Record<string, string> {
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const headers: Record<string, string> = { ...req.headers, 'x-amz-date': amzDate };
  const signed = Object.keys(headers).map((h) => h.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const canonical = canonicalRequest({ ...req, headers: lower }, signed, sha256(req.body));
  const date = amzDate.slice(0, 8);
  const stringToSign = [ALGORITHM, amzDate, `${date}/${region}/${service}/aws4_request`, sha256(canonical)].join('\n');
  const signature = hmac(signingKey(secret, date, region, service), stringToSign).toString('hex');
  return {
    'x-amz-date': amzDate,
    authorization: `${ALGORITHM} Credential=${accessKeyId}/${date}/${region}/${service}/aws4_request, SignedHeaders=${signed.join(';')}, Signature=${signature}`,
  };
}
