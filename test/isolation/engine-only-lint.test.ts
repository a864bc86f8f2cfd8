// The lint rule that keeps VM creation, memory slots, eventfd bindings and core assignment inside the isolation
// engine: the same call is refused in the hypervisor, a card or the controller, and allowed in src/isolation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ESLint } from 'eslint';
import { projectRoot } from '../../src/images/paths.js';

const CALLS = [
  'kvm.createVm()', 'vm.createVcpu(0)', 'vm.setUserMemoryRegion(0, 0, 4096, 0n)', 'vm.ioeventfd(3, 0xd0000050, 4, 0)', 'vm.irqfd(4, 5)',
  'libc.setAffinity(0, [1])',
];

async function ruleMessages(file: string, call: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: projectRoot() });
  const [result] = await eslint.lintText(`declare const kvm: any, vm: any, libc: any;\n${call};\n`, { filePath: `${projectRoot()}/${file}` });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'azote/engine-only').map((m) => m.message);
}

test('lint: only src/isolation creates VMs and vCPUs, registers memory slots and eventfds, or assigns cores', async () => {
  for (const call of CALLS) {
    for (const file of ['src/hypervisor/x.ts', 'src/cards/block/x.ts', 'src/controller/x.ts', 'src/cli/x.ts']) {
      const messages = await ruleMessages(file, call);
      assert.equal(messages.length, 1, `${call} in ${file}`);
      assert.match(messages[0] ?? '', /only the isolation engine \(src\/isolation\) does/);
    }
    assert.deepEqual(await ruleMessages('src/isolation/x.ts', call), [], `${call} in src/isolation`);
  }
});
