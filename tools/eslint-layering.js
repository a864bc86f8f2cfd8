// ESLint rule enforcing the house plan's import direction (../shared/ARCHITECTURE.md):
// a module under src/<layer>/ may import only from its own layer and the layers listed for it here.
import path from 'node:path';

const below = {
  base: [],
  sys: ['base'],
  protocols: ['base', 'sys'],
  kvm: ['base', 'sys'],
  memory: ['base', 'sys'],
  boot: ['base', 'sys', 'kvm', 'memory'],
  // The engine creates VMs, owns their memory and sets up their vCPUs.
  isolation: ['base', 'sys', 'kvm', 'memory', 'boot'],
  virtio: ['base', 'sys', 'memory'],
  'vhost-user': ['base', 'sys', 'memory', 'virtio'],
  images: ['base', 'sys'],
  // protocols: the snapshot file's layout, which the chip reads to MAC a snapshot the hypervisor wrote.
  'security-chip': ['base', 'sys', 'protocols'],
  hypervisor: ['base', 'sys', 'kvm', 'memory', 'boot', 'virtio', 'vhost-user', 'isolation', 'protocols'],
  cards: ['base', 'sys', 'memory', 'virtio', 'vhost-user'],
  enclaves: ['base', 'sys', 'security-chip'],
  controller: ['base', 'sys', 'kvm', 'memory', 'boot', 'virtio', 'vhost-user', 'hypervisor', 'cards',
    'isolation', 'security-chip', 'images', 'enclaves', 'protocols'],
  'control-plane': ['base', 'sys', 'controller', 'isolation', 'security-chip', 'images', 'enclaves', 'protocols'],
  cli: ['base', 'sys', 'kvm', 'memory', 'boot', 'virtio', 'vhost-user', 'hypervisor', 'cards', 'isolation',
    'security-chip', 'images', 'enclaves', 'controller', 'control-plane', 'protocols'],
};

function layerOf(file) {
  const parts = path.normalize(file).split(path.sep);
  const i = parts.lastIndexOf('src');
  return i >= 0 && i + 1 < parts.length - 1 ? parts[i + 1] : undefined;
}

const rule = {
  meta: {
    type: 'problem',
    docs: { description: 'imports point down the layers of the house plan' },
    schema: [],
  },
  create(context) {
    const file = context.filename;
    const from = layerOf(file);
    if (from === undefined) return {};
    function check(node, spec) {
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const to = layerOf(path.resolve(path.dirname(file), spec));
      if (to === undefined || to === from) return;
      const allowed = below[from];
      if (allowed === undefined) {
        context.report({ node, message: `layer '${from}' is not in the house plan's layer table` });
      } else if (!allowed.includes(to)) {
        context.report({ node, message: `'${from}' may not import from '${to}': imports point down (${from} -> ${allowed.join(', ') || 'nothing'})` });
      }
    }
    return {
      ImportDeclaration(node) { check(node, node.source.value); },
      ExportNamedDeclaration(node) { if (node.source) check(node, node.source.value); },
      ExportAllDeclaration(node) { check(node, node.source.value); },
      ImportExpression(node) { if (node.source.type === 'Literal') check(node, node.source.value); },
    };
  },
};

/**
 * The KVM calls that give a VM its memory, its vCPUs and its eventfds, and the call that moves threads between
 * cores: only the isolation engine makes them (the house plan: "Only isolation may create VMs, register memory
 * slots or assign cores"); the kvm layer defines them.
 */
const ENGINE_ONLY = new Set(['createVm', 'createVcpu', 'setUserMemoryRegion', 'ioeventfd', 'irqfd', 'setAffinity']);
const ENGINE_LAYERS = new Set(['isolation', 'kvm', 'sys']);

const engineOnly = {
  meta: {
    type: 'problem',
    docs: { description: 'only the isolation engine creates VMs and vCPUs, registers memory slots and eventfds, or assigns cores' },
    schema: [],
  },
  create(context) {
    const layer = layerOf(context.filename);
    if (layer === undefined || ENGINE_LAYERS.has(layer)) return {};
    return {
      CallExpression(node) {
        const callee = node.callee;
        if (callee.type !== 'MemberExpression' || callee.property.type !== 'Identifier' || !ENGINE_ONLY.has(callee.property.name)) return;
        context.report({ node, message: `'${layer}' may not call ${callee.property.name}: only the isolation engine (src/isolation) does` });
      },
    };
  },
};

export default { rules: { layering: rule, 'engine-only': engineOnly } };
