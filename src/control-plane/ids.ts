// Resource identifiers in EC2's forms: a prefix and 17 hexadecimal digits (i-0123456789abcdef0), 12-digit account
// ids, request ids as UUIDs.
import { randomBytes, randomInt, randomUUID } from 'node:crypto';

export type IdPrefix = 'i' | 'r' | 'key' | 'vol' | 'ami' | 'vpc' | 'subnet' | 'sg' | 'sgr' | 'eni' | 'eni-attach';

export function newId(prefix: IdPrefix): string {
  return `${prefix}-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

const HEX_ID = /^([0-9a-f]{8}|[0-9a-f]{17})$/;

/** Whether `id` has the shape of an id with this prefix (8 or 17 hex digits, as EC2 accepts). */
export function wellFormed(prefix: IdPrefix, id: string): boolean {
  return id.startsWith(`${prefix}-`) && HEX_ID.test(id.slice(prefix.length + 1));
}

export function newAccountId(): string {
  return Array.from({ length: 12 }, (_, i) => String(i === 0 ? randomInt(1, 10) : randomInt(0, 10))).join('');
}

export const newRequestId = (): string => randomUUID();
