// Request throttling per account, as EC2 does it: token buckets, one for the calls that only read (Describe*, Get*)
// and a smaller one for those that change something. A call takes a token from its bucket or is refused with
// RequestLimitExceeded; buckets refill at a steady rate up to their size, so a burst is served and then the rate.
import { Ec2Error } from './errors.js';

export interface BucketSize {
  /** Tokens when full: the burst served at once. */
  readonly burst: number;
  /** Tokens added per second. */
  readonly perSecond: number;
}

export interface ThrottleLimits {
  readonly describe: BucketSize;
  readonly mutate: BucketSize;
}

/** EC2's default sizes for its non-mutating and mutating actions. */
export const DEFAULT_THROTTLE: ThrottleLimits = { describe: { burst: 100, perSecond: 20 }, mutate: { burst: 50, perSecond: 5 } };

class Bucket {
  private tokens: number;
  private at: number;

  constructor(private readonly size: BucketSize, now: number) {
    this.tokens = size.burst;
    this.at = now;
  }

  take(now: number): boolean {
    this.tokens = Math.min(this.size.burst, this.tokens + ((now - this.at) / 1000) * this.size.perSecond);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  full(now: number): boolean {
    return this.tokens + ((now - this.at) / 1000) * this.size.perSecond >= this.size.burst;
  }
}

const readsOnly = (action: string): boolean => action.startsWith('Describe') || action.startsWith('Get');

export class Throttle {
  private readonly buckets = new Map<string, Bucket>();

  constructor(private readonly limits: ThrottleLimits = DEFAULT_THROTTLE, private readonly clock: () => number = () => performance.now()) {}

  /** Takes a token for `account`'s call of `action`, or throws RequestLimitExceeded. */
  admit(account: string, action: string): void {
    const now = this.clock();
    const kind = readsOnly(action) ? 'describe' : 'mutate';
    const key = `${kind} ${account}`;
    let bucket = this.buckets.get(key);
    if (!bucket) {
      this.forgetFull(now);
      bucket = new Bucket(this.limits[kind], now);
      this.buckets.set(key, bucket);
    }
    if (!bucket.take(now)) {
      throw new Ec2Error('RequestLimitExceeded',
        `Request limit exceeded: this account may make ${this.limits[kind].perSecond} ${kind === 'describe' ? 'Describe/Get' : 'mutating'} `
        + 'calls per second after a burst of ' + `${this.limits[kind].burst}; retry with backoff, as the AWS SDKs and CLI do`, 503);
    }
  }

  /** Drops buckets that have refilled (a new one starts full anyway), so that the map holds only recent callers. */
  private forgetFull(now: number): void {
    for (const [key, bucket] of this.buckets) if (bucket.full(now)) this.buckets.delete(key);
  }
}
