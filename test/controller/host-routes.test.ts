// Which VPCs get an uplink depends on the host's routes: /proc/net/route read as subnets (the default route left out).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostRoutes } from '../../src/controller/vpc-networks.js';

test('the host\'s routes are read from /proc/net/route\'s little-endian columns, without the default route', () => {
  const table = [
    'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT',
    'eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0',
    'eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0',
    'azvpc0\t00001FAC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0',
  ].join('\n');
  assert.deepEqual(hostRoutes(table), [
    { iface: 'eth0', network: ((192 << 24) | (168 << 16)) >>> 0, prefix: 24 },
    { iface: 'azvpc0', network: ((172 << 24) | (31 << 16)) >>> 0, prefix: 16 },
  ]);
  assert.ok(Array.isArray(hostRoutes()), 'this host\'s own table parses');
});
