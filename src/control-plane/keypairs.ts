// Key pairs: CreateKeyPair (RSA or Ed25519; the private key is returned once and not kept), ImportKeyPair,
// DescribeKeyPairs, DeleteKeyPair. The public key reaches an instance's root account through its metadata.
import { applyFilters, tagSet, tagSpecifications, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid } from './errors.js';
import { newId, wellFormed } from './ids.js';
import { checkTag } from './query.js';
import { generateKeyPair, parseOpenSshPublicKey, type KeyType } from './ssh-keys.js';
import type { KeyPairRow } from './store.js';
import { list } from './xml.js';

const KEY_NAME = /^[\x20-\x7e]{1,255}$/;

function refuseDuplicate(ctx: ApiContext, name: string): void {
  if (ctx.store.keyPairByName(ctx.account.id, name)) throw new Ec2Error('InvalidKeyPair.Duplicate', `The keypair '${name}' already exists.`);
}

function keyName(ctx: ApiContext): string {
  const name = ctx.params.required('KeyName');
  if (!KEY_NAME.test(name)) throw invalid('Key names must be 1 to 255 printable ASCII characters');
  refuseDuplicate(ctx, name);
  return name;
}

function store(ctx: ApiContext, name: string, type: KeyType, fingerprint: string, publicKey: string): KeyPairRow {
  const tags = tagSpecifications(ctx.params, 'key-pair', ['key-pair']);
  for (const t of tags) checkTag(t.key, t.value);
  const row: KeyPairRow = {
    id: newId('key'), account: ctx.account.id, name, key_type: type, fingerprint, public_key: publicKey, created: new Date().toISOString(),
  };
  ctx.store.transaction(() => {
    // Checked again: another CreateKeyPair of this name may have finished while this one's key was generated.
    refuseDuplicate(ctx, name);
    ctx.store.addKeyPair(row);
    for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: row.id, resource_type: 'key-pair', key: t.key, value: t.value });
  });
  return row;
}

export const createKeyPair: Action = async (ctx) => {
  const name = keyName(ctx);
  const type = ctx.params.optional('KeyType') ?? 'rsa';
  if (type !== 'rsa' && type !== 'ed25519') throw invalid(`Invalid value '${type}' for KeyType: rsa or ed25519`);
  const format = ctx.params.optional('KeyFormat') ?? 'pem';
  if (format !== 'pem') throw invalid(`Invalid value '${format}' for KeyFormat: Azote gives keys as pem`);
  const pair = await generateKeyPair(type, name);
  const row = store(ctx, name, type, pair.fingerprint, pair.openssh);
  const tags = ctx.store.tagsOf(ctx.account.id, row.id);
  return { keyName: name, keyFingerprint: pair.fingerprint, keyMaterial: pair.privateKey, keyPairId: row.id, tagSet: tags.length ? tagSet(tags) : undefined };
};

export const importKeyPair: Action = (ctx) => {
  const name = keyName(ctx);
  const material = ctx.params.required('PublicKeyMaterial');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(material)) throw invalid('PublicKeyMaterial is not valid base64');
  const parsed = parseOpenSshPublicKey(Buffer.from(material, 'base64').toString('utf8'));
  const row = store(ctx, name, parsed.type, parsed.fingerprint, parsed.openssh);
  const tags = ctx.store.tagsOf(ctx.account.id, row.id);
  return { keyFingerprint: parsed.fingerprint, keyName: name, keyPairId: row.id, tagSet: tags.length ? tagSet(tags) : undefined };
};

export const describeKeyPairs: Action = (ctx) => {
  const all = ctx.store.keyPairs(ctx.account.id);
  const names = ctx.params.list('KeyName'), ids = ctx.params.list('KeyPairId');
  for (const n of names) if (!all.some((k) => k.name === n)) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${n}' does not exist`);
  for (const id of ids) {
    if (!wellFormed('key', id)) throw new Ec2Error('InvalidKeyPair.Malformed', `Invalid id: "${id}"`);
    if (!all.some((k) => k.id === id)) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${id}' does not exist`);
  }
  const chosen = all.filter((k) => (names.length === 0 || names.includes(k.name)) && (ids.length === 0 || ids.includes(k.id)));
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'key-name': (k) => [k.name], 'key-pair-id': (k) => [k.id], fingerprint: (k) => [k.fingerprint], 'key-type': (k) => [k.key_type],
  }, (k) => ctx.store.tagsOf(ctx.account.id, k.id));
  return {
    keySet: list(rows.map((k) => {
      const tags = ctx.store.tagsOf(ctx.account.id, k.id);
      return {
        keyPairId: k.id, keyFingerprint: k.fingerprint, keyName: k.name, keyType: k.key_type,
        tagSet: tagSet(tags), createTime: new Date(k.created),
        publicKey: ctx.params.bool('IncludePublicKey', false) ? k.public_key : undefined,
      };
    })),
  };
};

export const deleteKeyPair: Action = (ctx) => {
  const name = ctx.params.optional('KeyName'), id = ctx.params.optional('KeyPairId');
  if (name === undefined && id === undefined) throw new Ec2Error('MissingParameter', 'The request must contain the parameter KeyName or KeyPairId');
  if (id !== undefined && !wellFormed('key', id)) throw new Ec2Error('InvalidKeyPair.Malformed', `Invalid id: "${id}"`);
  const row = ctx.store.keyPairs(ctx.account.id).find((k) => (name === undefined || k.name === name) && (id === undefined || k.id === id));
  // As in EC2, deleting a key pair that does not exist succeeds.
  if (row) ctx.store.deleteKeyPair(ctx.account.id, row.id);
  return { return: true, keyPairId: row?.id };
};
