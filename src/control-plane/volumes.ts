// EBS-like volumes: raw files under the data directory, each served to its instance by a block card of its own
// while the instance runs. CreateVolume, AttachVolume and DetachVolume (while the instance is stopped: hot attach
// is not built yet), DeleteVolume (when detached), DescribeVolumes. A guest sees attached volumes after its root
// and metadata disks, in the order they were attached: /dev/vdc, /dev/vdd, ...
import { AzoteError } from '../base/errors.js';
import { applyFilters, paginate, tagSet, tagSpecifications, zoneOf, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid, missing } from './errors.js';
import { newId, wellFormed } from './ids.js';
import { checkTag } from './query.js';
import type { Quotas } from './quotas.js';
import type { VolumeRow } from './store.js';
import { list, type XmlNode } from './xml.js';

/** EBS's size bounds of each volume type, in GiB. */
const SIZES: Readonly<Record<string, readonly [number, number]>> = {
  gp2: [1, 16384], gp3: [1, 16384], io1: [4, 16384], io2: [4, 65536], st1: [125, 16384], sc1: [125, 16384], standard: [1, 1024],
};
/** Volumes an instance may have attached. */
const MAX_ATTACHED = 8;
const DEVICE = /^\/dev\/(sd[b-z]|xvd[b-z]|vd[c-z])$/;

function volumeXml(ctx: ApiContext, v: VolumeRow): XmlNode {
  const tags = ctx.store.tagsOf(ctx.account.id, v.id);
  return {
    volumeId: v.id, size: v.size_gib, snapshotId: '', availabilityZone: zoneOf(ctx.region), status: v.state, createTime: new Date(v.created),
    attachmentSet: list(v.instance_id ? [{
      volumeId: v.id, instanceId: v.instance_id, device: v.device ?? '', status: 'attached',
      attachTime: new Date(v.attach_time ?? v.created), deleteOnTermination: false,
    }] : []),
    volumeType: v.volume_type, encrypted: false, multiAttachEnabled: false, tagSet: tags.length > 0 ? tagSet(tags) : undefined,
  };
}

function volume(ctx: ApiContext, name = 'VolumeId'): VolumeRow {
  const id = ctx.params.required(name);
  if (!wellFormed('vol', id)) throw new Ec2Error('InvalidVolumeID.Malformed', `Invalid id: "${id}" (expecting "vol-...")`);
  const v = ctx.store.volume(ctx.account.id, id);
  if (!v) throw new Ec2Error('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
  return v;
}

export const createVolume: Action = (c) => {
  const ctx = c as ApiContext & { readonly quotas: Quotas };
  const zone = ctx.params.required('AvailabilityZone');
  if (zone !== zoneOf(ctx.region)) throw invalid(`Invalid availability zone: [${zone}]`);
  if (ctx.params.optional('SnapshotId') !== undefined) throw new Ec2Error('InvalidSnapshot.NotFound', 'Snapshots are not available on this host yet');
  const type = ctx.params.optional('VolumeType') ?? 'gp3';
  const bounds = Object.hasOwn(SIZES, type) ? SIZES[type] : undefined;
  if (!bounds) throw invalid(`Value (${type}) for parameter volumeType is invalid.`);
  const size = ctx.params.int('Size', undefined, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (size === undefined) throw missing('Size');
  if (size < bounds[0] || size > bounds[1]) {
    throw invalid(`Volume of ${size}GiB is outside the size of a ${type} volume: ${bounds[0]} to ${bounds[1]} GiB`);
  }
  const tags = tagSpecifications(ctx.params, 'volume', ['volume']);
  for (const t of tags) checkTag(t.key, t.value);
  ctx.quotas.disks(ctx.account.id, size);
  const row: VolumeRow = {
    id: newId('vol'), account: ctx.account.id, size_gib: size, volume_type: type, state: 'available', created: new Date().toISOString(),
    instance_id: null, device: null, attach_time: null,
  };
  try {
    ctx.controller.createVolume(row.id, size);
  } catch (e) {
    if (e instanceof AzoteError && e.code === 'VolumeCapacity') {
      throw new Ec2Error('InsufficientVolumeCapacity', `There is not enough capacity to fulfill your volume provision request: this host `
        + `cannot hold a volume of ${size} GiB; ask for a smaller one`, 500);
    }
    throw e;
  }
  try {
    ctx.store.transaction(() => {
      ctx.store.addVolume(row);
      for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: row.id, resource_type: 'volume', key: t.key, value: t.value });
    });
  } catch (e) {
    ctx.controller.deleteVolume(row.id);
    throw e;
  }
  return volumeXml(ctx, row);
};

function attachmentXml(v: VolumeRow, state: string): XmlNode {
  return { volumeId: v.id, instanceId: v.instance_id ?? '', device: v.device ?? '', status: state, attachTime: new Date(v.attach_time ?? v.created), deleteOnTermination: false };
}

export const attachVolume: Action = (ctx) => {
  const v = volume(ctx);
  const instanceId = ctx.params.required('InstanceId');
  const device = ctx.params.required('Device');
  if (!wellFormed('i', instanceId)) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${instanceId}"`);
  const instance = ctx.store.instance(ctx.account.id, instanceId);
  if (!instance) throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID '${instanceId}' does not exist`);
  if (!DEVICE.test(device)) throw invalid(`Value (${device}) for parameter device is invalid. ${device} is not a valid EBS device name.`);
  if (v.state !== 'available') throw new Ec2Error('VolumeInUse', `vol '${v.id}' is already attached to an instance`);
  if (instance.state !== 'stopped') {
    throw new Ec2Error('IncorrectInstanceState', `The instance '${instanceId}' is not 'stopped': Azote attaches volumes to stopped instances (no hot attach yet)`);
  }
  const attached = ctx.store.volumesOf(instanceId);
  if (attached.some((a) => a.device === device)) throw invalid(`Attachment point ${device} is already in use`);
  if (attached.length >= MAX_ATTACHED) throw new Ec2Error('AttachmentLimitExceeded', `An instance may have at most ${MAX_ATTACHED} volumes attached`);
  ctx.store.updateVolume(v.id, { state: 'in-use', instance_id: instanceId, device, attach_time: new Date().toISOString() });
  return attachmentXml(ctx.store.volume(ctx.account.id, v.id) as VolumeRow, 'attached');
};

export const detachVolume: Action = (ctx) => {
  const v = volume(ctx);
  if (v.state !== 'in-use' || !v.instance_id) throw new Ec2Error('IncorrectState', `Volume '${v.id}' is in the 'available' state.`);
  const given = ctx.params.optional('InstanceId');
  if (given !== undefined && given !== v.instance_id) throw new Ec2Error('InvalidAttachment.NotFound', `Volume '${v.id}' is not attached to '${given}'`);
  const instance = ctx.store.instance(ctx.account.id, v.instance_id);
  if (instance && instance.state !== 'stopped' && instance.state !== 'terminated') {
    throw new Ec2Error('IncorrectInstanceState', `The instance '${v.instance_id}' is not 'stopped': stop it before detaching (no hot detach yet)`);
  }
  ctx.store.updateVolume(v.id, { state: 'available', instance_id: null, device: null, attach_time: null });
  return attachmentXml(v, 'detached');
};

export const deleteVolume: Action = (ctx) => {
  const v = volume(ctx);
  if (v.state !== 'available') throw new Ec2Error('VolumeInUse', `Volume ${v.id} is currently attached to ${v.instance_id ?? 'an instance'}`);
  ctx.store.deleteVolume(ctx.account.id, v.id);
  ctx.controller.deleteVolume(v.id);
  return { return: true };
};

export const describeVolumes: Action = (ctx) => {
  const all = ctx.store.volumes(ctx.account.id);
  const ids = ctx.params.list('VolumeId');
  for (const id of ids) {
    if (!wellFormed('vol', id)) throw new Ec2Error('InvalidVolumeID.Malformed', `Invalid id: "${id}" (expecting "vol-...")`);
    if (!all.some((v) => v.id === id)) throw new Ec2Error('InvalidVolume.NotFound', `The volume '${id}' does not exist.`);
  }
  const chosen = ids.length > 0 ? all.filter((v) => ids.includes(v.id)) : all;
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'volume-id': (v) => [v.id], status: (v) => [v.state], size: (v) => [String(v.size_gib)], 'volume-type': (v) => [v.volume_type],
    'attachment.instance-id': (v) => [v.instance_id ?? undefined], 'attachment.device': (v) => [v.device ?? undefined],
    'availability-zone': () => [zoneOf(ctx.region)],
  }, (v) => ctx.store.tagsOf(ctx.account.id, v.id));
  const { page, next } = paginate(ctx.params, rows, 5, 500);
  return { volumeSet: list(page.map((v) => volumeXml(ctx, v))), nextToken: next };
};
