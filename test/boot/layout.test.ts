import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootParams, bootE820Entry } from '../../src/boot/boot-params.js';
import { hvmMemmapEntry, hvmModlistEntry, hvmStartInfo } from '../../src/boot/pvh.js';
import { readCFacts, layoutMismatches } from '../framework/c-layout.js';

test('boot_params layout matches <asm/bootparam.h>', () => {
  const layouts = [bootParams, bootE820Entry];
  assert.deepEqual(layoutMismatches(layouts, readCFacts(['asm/bootparam.h'], layouts)), []);
});

// A transcription of Xen's public arch-x86/hvm/start_info.h (the PVH boot ABI), which the host has no header for.
const startInfoH = `
#include <stdint.h>
struct hvm_start_info { uint32_t magic, version, flags, nr_modules; uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr,
  memmap_paddr; uint32_t memmap_entries, reserved; };
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };
struct hvm_memmap_table_entry { uint64_t addr, size; uint32_t type, reserved; };
`;

test('PVH start info layout matches the Xen ABI', () => {
  const layouts = [hvmStartInfo, hvmModlistEntry, hvmMemmapEntry];
  assert.deepEqual(layoutMismatches(layouts, readCFacts([], layouts, [], startInfoH)), []);
});
