// What every action sees: the store, the host's controller, where it is, and who is asking.
import type { Controller } from '../controller/controller.js';
import { Ec2Error, invalid } from './errors.js';
import type { Filter, QueryParams } from './query.js';
import type { AccountRow, Store, TagRow } from './store.js';
import { anyMatches, compileWildcard } from './wildcard.js';
import { list, type XmlNode, type XmlValue } from './xml.js';

export interface ApiContext {
  readonly store: Store;
  readonly controller: Controller;
  readonly region: string;
  readonly dataDir: string;
  readonly account: AccountRow;
  readonly params: QueryParams;
}

export type Action = (ctx: ApiContext) => Promise<XmlNode> | XmlNode;

/** The one availability zone of this host. */
export const zoneOf = (region: string): string => `${region}a`;

/** Its AZ id in EC2's form (use1-az1 for us-east-1). */
export function zoneIdOf(region: string): string {
  const [area = 'x', where = 'x', n = '1'] = region.split('-');
  return `${area}${where[0] ?? 'x'}${n}-az1`;
}

/** Whether a value matches any of a filter's values (EC2's wildcards, see wildcard.ts). */
export function filterMatcher(values: readonly string[]): (v: string | undefined) => boolean {
  const patterns = values.map(compileWildcard);
  return (v) => v !== undefined && anyMatches(patterns, v);
}

/**
 * Applies `filters` to items: each filter name maps to the item's values (any of which may match); tag:KEY,
 * tag-key and tag-value are answered from the item's tags. An unknown filter name is an error, as in EC2.
 */
export function applyFilters<T>(items: readonly T[], filters: readonly Filter[],
  fields: Record<string, (item: T) => Array<string | undefined>>, tagsOfItem?: (item: T) => readonly TagRow[]): T[] {
  // Each item's tags are read once, however many tag filters there are.
  const tagCache = new Map<T, readonly TagRow[]>();
  const tagsOf = tagsOfItem && ((item: T): readonly TagRow[] => {
    let tags = tagCache.get(item);
    if (!tags) tagCache.set(item, tags = tagsOfItem(item));
    return tags;
  });
  const tests = filters.map((f) => {
    const match = filterMatcher(f.values);
    if (f.name.startsWith('tag:') && tagsOf) {
      const key = f.name.slice(4);
      return (item: T) => tagsOf(item).some((t) => t.key === key && match(t.value));
    }
    if (f.name === 'tag-key' && tagsOf) return (item: T) => tagsOf(item).some((t) => match(t.key));
    if (f.name === 'tag-value' && tagsOf) return (item: T) => tagsOf(item).some((t) => match(t.value));
    const field = fields[f.name];
    if (!field) throw invalid(`The filter '${f.name}' is invalid`);
    return (item: T) => field(item).some(match);
  });
  return items.filter((item) => tests.every((t) => t(item)));
}

export function tagSet(tags: readonly TagRow[]): XmlValue {
  return list(tags.map((t) => ({ key: t.key, value: t.value })));
}

/** MaxResults and NextToken: a page of `items` and the token for the next, if any. */
export function paginate<T>(params: QueryParams, items: readonly T[], min: number, max: number): { page: T[]; next: string | undefined } {
  const limit = params.int('MaxResults', undefined, min, max);
  const token = params.optional('NextToken');
  let start = 0;
  if (token !== undefined) {
    const m = /^([0-9]+)\.azote$/.exec(Buffer.from(token, 'base64url').toString());
    if (!m) throw new Ec2Error('InvalidParameterValue', `Invalid NextToken '${token.slice(0, 80)}'`);
    start = Number(m[1]);
  }
  if (limit === undefined) return { page: items.slice(start), next: undefined };
  const end = start + limit;
  return { page: items.slice(start, end), next: end < items.length ? Buffer.from(`${end}.azote`).toString('base64url') : undefined };
}

/** TagSpecification.N for `resourceType`: the tags to put on new resources of that type. */
export function tagSpecifications(params: QueryParams, resourceType: string, allowed: readonly string[]): Array<{ key: string; value: string }> {
  const out: Array<{ key: string; value: string }> = [];
  for (const i of params.indexes('TagSpecification')) {
    const type = params.optional(`TagSpecification.${i}.ResourceType`);
    if (!type) throw new Ec2Error('MissingParameter', `The request must contain the parameter TagSpecification.${i}.ResourceType`);
    if (!allowed.includes(type)) throw invalid(`'${type}' is not a valid taggable resource type for this operation.`);
    if (type !== resourceType) continue;
    for (const t of params.tags(`TagSpecification.${i}.Tag`)) out.push({ key: t.key, value: t.value ?? '' });
  }
  return out;
}

/** "User initiated (2026-11-23 10:00:00 GMT)", EC2's transition reason form. */
export function userInitiated(now = new Date()): string {
  return `User initiated (${now.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' GMT')})`;
}
