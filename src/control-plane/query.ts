// The parameters of an EC2 Query request: a flat map of names such as InstanceId.1 or Filter.2.Value.1, read
// through helpers that validate as they go and answer in EC2 errors.
import { Ec2Error, invalid, missing } from './errors.js';

/** The most members one list parameter may have (EC2 itself caps most lists at 1000). */
const MAX_LIST = 1000;
/** The most filters in one request, and filter values in all of them together, as EC2 (FilterLimitExceeded beyond):
 * every value is matched against every resource, so together they bound a Describe call's work. */
export const MAX_FILTERS = 50;
export const MAX_FILTER_VALUES = 200;

export interface Filter {
  readonly name: string;
  readonly values: readonly string[];
}

export class QueryParams {
  constructor(private readonly map: ReadonlyMap<string, string>) {}

  static parse(body: string): QueryParams {
    const map = new Map<string, string>();
    for (const [k, v] of new URLSearchParams(body)) {
      if (map.has(k)) throw invalid(`The parameter ${k} is given more than once`);
      map.set(k, v);
    }
    return new QueryParams(map);
  }

  get names(): IterableIterator<string> {
    return this.map.keys();
  }

  optional(name: string): string | undefined {
    return this.map.get(name);
  }

  required(name: string): string {
    const v = this.map.get(name);
    if (v === undefined || v === '') throw missing(name);
    return v;
  }

  int(name: string, dflt: number | undefined, min: number, max: number): number | undefined {
    const v = this.map.get(name);
    if (v === undefined) return dflt;
    if (!/^-?\d+$/.test(v)) throw invalid(`Invalid value '${v}' for ${name}: an integer is expected`);
    const n = Number(v);
    if (n < min || n > max) throw invalid(`Value (${v}) for parameter ${name} is invalid. It must be from ${min} to ${max}`);
    return n;
  }

  bool(name: string, dflt: boolean): boolean {
    const v = this.map.get(name);
    if (v === undefined) return dflt;
    if (v !== 'true' && v !== 'false') throw invalid(`Invalid value '${v}' for ${name}: true or false is expected`);
    return v === 'true';
  }

  /** prefix.1, prefix.2, ... as given (no gaps allowed beyond the last). */
  list(prefix: string): string[] {
    return this.indexes(prefix).map((i) => this.map.get(`${prefix}.${i}`) ?? '');
  }

  /** The indexes N under which `prefix.N` or `prefix.N.*` is given, in order. */
  indexes(prefix: string): number[] {
    const found = new Set<number>();
    const head = `${prefix}.`;
    for (const k of this.map.keys()) {
      if (!k.startsWith(head)) continue;
      const m = /^(\d+)(\.|$)/.exec(k.slice(head.length));
      if (!m) continue;
      const n = Number(m[1]);
      if (n < 1 || n > MAX_LIST) throw invalid(`The index in ${k} is out of range (1 to ${MAX_LIST})`);
      found.add(n);
    }
    return [...found].sort((a, b) => a - b);
  }

  filters(): Filter[] {
    const indexes = this.indexes('Filter');
    if (indexes.length > MAX_FILTERS) {
      throw new Ec2Error('FilterLimitExceeded', `The request has ${indexes.length} filters: at most ${MAX_FILTERS} are allowed; split it into several calls`);
    }
    const filters = indexes.map((i) => {
      const name = this.optional(`Filter.${i}.Name`);
      if (!name) throw missing(`Filter.${i}.Name`);
      return { name, values: this.list(`Filter.${i}.Value`) };
    });
    const values = filters.reduce((n, f) => n + f.values.length, 0);
    if (values > MAX_FILTER_VALUES) {
      throw new Ec2Error('FilterLimitExceeded',
        `The maximum number of filter values specified on a single call is ${MAX_FILTER_VALUES}; this one has ${values}: split it into several calls`);
    }
    return filters;
  }

  /** Tag.N.Key / Tag.N.Value under `prefix`. */
  tags(prefix: string): Array<{ key: string; value: string | undefined }> {
    return this.indexes(prefix).map((i) => {
      const key = this.optional(`${prefix}.${i}.Key`);
      if (key === undefined) throw missing(`${prefix}.${i}.Key`);
      return { key, value: this.optional(`${prefix}.${i}.Value`) };
    });
  }
}

/** Checks a tag as EC2 does: keys 1-128 characters and not aws:, values up to 256. */
export function checkTag(key: string, value: string): void {
  if (key.length < 1 || key.length > 128) throw invalid(`Tag key '${key.slice(0, 140)}' must be 1 to 128 characters`);
  if (value.length > 256) throw invalid(`Tag value for '${key}' must be at most 256 characters`);
  if (key.toLowerCase().startsWith('aws:')) throw new Ec2Error('InvalidParameterValue', `Tag keys starting with 'aws:' are reserved`);
}
