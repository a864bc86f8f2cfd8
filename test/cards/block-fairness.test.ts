// One block card, two volumes: a frontend whose guest keeps its ring full for ever (a driver on another thread makes
// 1 MiB reads available again as fast as the card returns them) does not keep the card from the other volume's
// frontend, which is answered and has its read served while the flood goes on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../src/images/paths.js';
import { VhostUserFrontend } from '../../src/vhost-user/frontend.js';
import { BLK_T } from '../../src/virtio/blk.js';
import { QUEUE_BUDGET } from '../../src/virtio/budget.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type QueueConfig } from '../../src/virtio/split-queue.js';
import { backend } from '../framework/backend.js';
import { RingFlood } from '../framework/ring-flood.js';
import { SharedGuest } from '../framework/shared-guest.js';

const dir = mkdtempSync(path.join(tmpdir(), 'azote-blk-fair-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const MEM = 4 << 20;
const Q: QueueConfig = { size: 256, descAddr: 0x1000, availAddr: 0x2000, usedAddr: 0x3000, indirect: false, eventIdx: false };
/** The flooding guest's ring: as long as QEMU makes them (1024), so that the card never sees it empty. */
const FLOOD_Q: QueueConfig = { size: 1024, descAddr: 0x10000, availAddr: 0x20000, usedAddr: 0x30000, indirect: false, eventIdx: false };
const HEADER = 0x50000, STATUS = 0x51000, DATA = 0x100000;

/** A read of `length` bytes from sector 0, as the chain at descriptor 0 (header, data, status). */
function read(g: SharedGuest, length: number): void {
  const d = g.drivers[0];
  assert.ok(d);
  g.mem.writeU32(HEADER, BLK_T.IN);
  d.desc(d.c.descAddr, 0, BigInt(HEADER), 16, VIRTQ_DESC_F_NEXT, 1);
  d.desc(d.c.descAddr, 1, BigInt(DATA), length, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
  d.desc(d.c.descAddr, 2, BigInt(STATUS), 1, VIRTQ_DESC_F_WRITE);
}

test('block card: a guest that keeps its ring full does not starve another volume\'s guest on the same card', { timeout: 120_000 }, async () => {
  const volumes = ['flood', 'quiet'].map((name) => {
    const file = path.join(dir, `${name}.img`);
    writeFileSync(file, new Uint8Array(1 << 20).fill(name === 'quiet' ? 0x5a : 1));
    return `${name}=${file}`;
  });
  const base = path.join(dir, 'card.sock');
  const card = await backend(process.execPath, [path.join(projectRoot(), 'bin', 'azote.js'), 'card', 'block', '--socket', base,
    ...volumes.flatMap((v) => ['--volume', v])], `${base}:quiet`);
  const guests: SharedGuest[] = [];
  let flood: RingFlood | undefined;
  try {
    const noisy = new SharedGuest(VhostUserFrontend.connect(`${base}:flood`), MEM, [FLOOD_Q]);
    guests.push(noisy);
    // Each request takes the card a while: the other thread always has the next one ready.
    read(noisy, 1 << 20);
    noisy.start();
    flood = new RingFlood(noisy, 0);
    await flood.reaches(20 * QUEUE_BUDGET);

    // Without budgets the card never leaves the flooded ring: this frontend's first request is never answered.
    const quiet = new SharedGuest(VhostUserFrontend.connect(`${base}:quiet`), MEM, [Q]);
    guests.push(quiet);
    read(quiet, 512);
    quiet.start();
    quiet.offer(0, 0);
    for (let i = 0; i < 600 && quiet.used(0) === 0; i++) await sleep(100);
    assert.equal(quiet.used(0), 1, 'the quiet guest\'s read completed');
    assert.equal(quiet.mem.bytes[STATUS], 0, 'VIRTIO_BLK_S_OK');
    assert.ok(quiet.mem.bytes.subarray(DATA, DATA + 512).every((b) => b === 0x5a), 'it read its own volume');
    await flood.reaches(flood.returned + 10 * QUEUE_BUDGET);
  } finally {
    await flood?.stop();
    for (const g of guests) g.close();
    card.stop();
  }
});
