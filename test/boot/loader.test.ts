// What the loader leaves in guest memory for each boot protocol: the zero page (bzImage) or the PVH start info,
// the e820 map, the command line and the initrd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { StructView } from '../../src/base/struct.js';
import { bootE820Entry, bootParams, SETUP_HEADER_MAGIC } from '../../src/boot/boot-params.js';
import { E820_RAM, E820_RESERVED } from '../../src/boot/e820.js';
import { CMDLINE, PVH_MEMMAP, PVH_MODLIST, PVH_START_INFO, ZERO_PAGE } from '../../src/boot/layout.js';
import { loadGuest } from '../../src/boot/loader.js';
import { hvmMemmapEntry, hvmModlistEntry, hvmStartInfo } from '../../src/boot/pvh.js';
import { GuestMemory, MiB } from '../../src/memory/guest-memory.js';
import { testGuest } from '../framework/microvm.js';

const EXPECTED_MAP = (ramMiB: number): Array<{ addr: number; size: number; type: number }> => [
  { addr: 0, size: 0x9fc00, type: E820_RAM },
  { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
  { addr: 0x100000, size: ramMiB * MiB - 0x100000, type: E820_RAM },
];

function withMemory(mib: number, f: (mem: GuestMemory) => void): void {
  const mem = GuestMemory.create(mib * MiB);
  try {
    f(mem);
  } finally {
    mem.close();
  }
}

/** A minimal bzImage: one setup sector after the boot sector, a 64-bit capable protocol 2.15 header, a payload. */
function fakeBzImage(payload: number): Uint8Array {
  const k = new Uint8Array(2 * 512 + payload);
  const hdr = new StructView(bootParams, k.subarray(0, 4096));
  hdr.set('setupSects', 1).set('bootFlag', 0xaa55).set('header', SETUP_HEADER_MAGIC).set('version', 0x20f)
    .set('loadflags', 0x01).set('initrdAddrMax', 0x7fffffff).set('xloadflags', 0x1).set('initSize', payload);
  k[0x201] = 0x6a; // the header's length after 0x202
  k.fill(0xc3, 1024);
  return k;
}

test('bzImage: the zero page has the command line, the initrd and the e820 map', () => {
  withMemory(64, (mem) => {
    const initrd = new Uint8Array(3000).fill(7);
    const plan = loadGuest(mem, { kernel: fakeBzImage(8192), initrd, cmdline: 'console=ttyS0 quiet', vcpus: 2 });
    assert.equal(plan.protocol, 'linux64');
    assert.equal(plan.entry, 0x100000 + 0x200);
    const zp = new StructView(bootParams, mem.slice(ZERO_PAGE, 4096));
    assert.equal(zp.get('header'), SETUP_HEADER_MAGIC, 'the setup header is copied from the image');
    assert.equal(zp.get('typeOfLoader'), 0xff);
    assert.equal(zp.get('cmdLinePtr'), CMDLINE);
    assert.equal(Buffer.from(mem.read(CMDLINE, 20)).toString('latin1'), 'console=ttyS0 quiet\0');
    assert.equal(zp.get('code32Start'), 0x100000);
    assert.ok(plan.initrd);
    assert.equal(zp.get('ramdiskImage'), plan.initrd.addr);
    assert.equal(zp.get('ramdiskSize'), 3000);
    assert.equal(plan.initrd.addr % 4096, 0);
    assert.ok(plan.initrd.addr + 3000 <= 64 * MiB, 'the initrd ends inside RAM');
    assert.deepEqual(mem.read(plan.initrd.addr, 3000), initrd);
    assert.equal(zp.get('e820Entries'), 3);
    const table = zp.field('e820Table');
    const map = [0, 1, 2].map((i) => {
      const e = new StructView(bootE820Entry, table, i * bootE820Entry.size);
      return { addr: Number(e.get('addr')), size: Number(e.get('size')), type: e.get('type') };
    });
    assert.deepEqual(map, EXPECTED_MAP(64));
  });
});

test('PVH: start info, module list and memory map', () => {
  withMemory(64, (mem) => {
    const initrd = new Uint8Array(5000).fill(9);
    const plan = loadGuest(mem, { kernel: readFileSync(testGuest('hello')), initrd, cmdline: 'a=b', vcpus: 1 });
    assert.equal(plan.protocol, 'pvh');
    assert.equal(plan.bootInfo, PVH_START_INFO);
    const si = new StructView(hvmStartInfo, mem.slice(PVH_START_INFO, hvmStartInfo.size));
    assert.equal(si.get('magic'), 0x336ec578);
    assert.equal(si.get('version'), 1);
    assert.equal(Number(si.get('cmdlinePaddr')), CMDLINE);
    assert.equal(si.get('nrModules'), 1);
    assert.equal(Number(si.get('modlistPaddr')), PVH_MODLIST);
    const mod = new StructView(hvmModlistEntry, mem.slice(PVH_MODLIST, hvmModlistEntry.size));
    assert.equal(Number(mod.get('size')), 5000);
    assert.deepEqual(mem.read(Number(mod.get('paddr')), 5000), initrd);
    assert.equal(si.get('memmapEntries'), 3);
    assert.equal(Number(si.get('memmapPaddr')), PVH_MEMMAP);
    const map = [0, 1, 2].map((i) => {
      const e = new StructView(hvmMemmapEntry, mem.slice(PVH_MEMMAP + i * hvmMemmapEntry.size, hvmMemmapEntry.size));
      return { addr: Number(e.get('addr')), size: Number(e.get('size')), type: e.get('type') };
    });
    assert.deepEqual(map, EXPECTED_MAP(64));
  });
});

test('memory above 3 GiB is reported above 4 GiB', () => {
  withMemory(3 * 1024 + 64, (mem) => {
    loadGuest(mem, { kernel: readFileSync(testGuest('hello')), cmdline: '', vcpus: 1 });
    const si = new StructView(hvmStartInfo, mem.slice(PVH_START_INFO, hvmStartInfo.size));
    assert.equal(si.get('memmapEntries'), 4);
    const last = new StructView(hvmMemmapEntry, mem.slice(PVH_MEMMAP + 3 * hvmMemmapEntry.size, hvmMemmapEntry.size));
    assert.deepEqual([Number(last.get('addr')), Number(last.get('size')), last.get('type')], [4 * 1024 * MiB, 64 * MiB, E820_RAM]);
  });
});
