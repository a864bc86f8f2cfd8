// Per-account token buckets: a burst, then the refill rate; reads and changes apart; accounts apart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ec2Error } from '../../src/control-plane/errors.js';
import { Throttle } from '../../src/control-plane/throttle.js';

const limited = (e: unknown): boolean => e instanceof Ec2Error && e.code === 'RequestLimitExceeded' && e.status === 503;

test('throttle: a burst is served, then calls are refused until tokens come back at the refill rate', () => {
  let now = 0;
  const t = new Throttle({ describe: { burst: 3, perSecond: 2 }, mutate: { burst: 1, perSecond: 1 } }, () => now);
  for (let i = 0; i < 3; i++) t.admit('a', 'DescribeInstances');
  assert.throws(() => t.admit('a', 'DescribeInstances'), limited);
  assert.throws(() => t.admit('a', 'GetConsoleOutput'), limited, 'Get* calls share the Describe bucket');
  t.admit('b', 'DescribeInstances');
  t.admit('a', 'RunInstances');
  assert.throws(() => t.admit('a', 'TerminateInstances'), limited, 'mutating calls have their own, smaller bucket');
  now = 499;
  assert.throws(() => t.admit('a', 'DescribeInstances'), limited, 'not yet one token');
  now = 500;
  t.admit('a', 'DescribeInstances');
  now = 60_000;
  for (let i = 0; i < 3; i++) t.admit('a', 'DescribeInstances');
  assert.throws(() => t.admit('a', 'DescribeInstances'), limited, 'a bucket never holds more than its burst');
});

test('throttle: the refusal says what the limit is and what to do', () => {
  const t = new Throttle({ describe: { burst: 1, perSecond: 1 }, mutate: { burst: 1, perSecond: 1 } }, () => 0);
  t.admit('a', 'CreateTags');
  assert.throws(() => t.admit('a', 'CreateTags'), (e: unknown) => limited(e) && /retry with backoff/.test((e as Error).message));
});
