// Instance actions: RunInstances, DescribeInstances, DescribeInstanceStatus, Start/Stop/Reboot/TerminateInstances,
// GetConsoleOutput.
import { createHash } from 'node:crypto';
import { imageByAmi, imageGiB, instanceType } from './catalogue.js';
import { applyFilters, paginate, tagSet, tagSpecifications, zoneOf, type Action, type ApiContext } from './context.js';
import { Ec2Error, invalid, missing, notFound } from './errors.js';
import { newId, wellFormed } from './ids.js';
import type { Lifecycle } from './lifecycle.js';
import { attachInterface, instanceInterfaceXml, launchNetwork, NetworkView, privateDnsName, shownAddress } from './network-interfaces.js';
import { checkTag } from './query.js';
import type { Quotas } from './quotas.js';
import { STATE_CODES, type InstanceRow, type TagRow, type VolumeRow } from './store.js';
import { availableAddresses } from './subnets.js';
import { list, type XmlNode } from './xml.js';

/** EC2's limit on user data (before base64). */
const MAX_USER_DATA = 16 * 1024;
const MAX_ROOT_GIB = 1024;
const ROOT_DEVICE = '/dev/xvda';
const ROOT_NAMES = ['/dev/xvda', '/dev/sda1', '/dev/vda', '/dev/sda'];

export interface InstanceActionsContext extends ApiContext {
  readonly lifecycle: Lifecycle;
  readonly quotas: Quotas;
}

const state = (name: InstanceRow['state']): XmlNode => ({ code: STATE_CODES[name], name });

/** Tags, volumes and interfaces of many instances, read once (a DescribeInstances page). */
interface Related {
  readonly tags: ReadonlyMap<string, TagRow[]>;
  readonly volumes: ReadonlyMap<string, VolumeRow[]>;
  readonly network: NetworkView;
}

function related(ctx: ApiContext): Related {
  const tags = new Map<string, TagRow[]>();
  for (const t of ctx.store.tags(ctx.account.id)) tags.set(t.resource_id, [...(tags.get(t.resource_id) ?? []), t]);
  const volumes = new Map<string, VolumeRow[]>();
  for (const v of ctx.store.volumes(ctx.account.id)) {
    if (v.instance_id) volumes.set(v.instance_id, [...(volumes.get(v.instance_id) ?? []), v]);
  }
  for (const list_ of volumes.values()) list_.sort((a, b) => (a.attach_time ?? '').localeCompare(b.attach_time ?? ''));
  return { tags, volumes, network: new NetworkView(ctx) };
}

export function instanceXml(ctx: ApiContext, r: InstanceRow, rel?: Related): XmlNode {
  const tags = rel ? rel.tags.get(r.id) ?? [] : ctx.store.tagsOf(ctx.account.id, r.id);
  const volumes = rel ? rel.volumes.get(r.id) ?? [] : ctx.store.volumesOf(r.id);
  const network = rel?.network ?? new NetworkView(ctx);
  // A terminated instance's interface is gone with it, as on EC2.
  const nic = network.interfaceOf(r.id);
  const { ip } = shownAddress(r);
  return {
    instanceId: r.id, imageId: r.image_id, instanceState: state(r.state),
    privateDnsName: privateDnsName(ctx.region, ip),
    dnsName: '', reason: r.transition_reason, keyName: r.key_name ?? undefined, amiLaunchIndex: r.launch_index,
    productCodes: list([]), instanceType: r.instance_type, launchTime: new Date(r.launch_time),
    placement: { availabilityZone: zoneOf(ctx.region), groupName: '', tenancy: 'default' },
    monitoring: { state: 'disabled' }, subnetId: nic?.subnet_id, vpcId: nic?.vpc_id, privateIpAddress: ip,
    stateReason: r.state_reason_code ? { code: r.state_reason_code, message: r.state_reason_message ?? '' } : undefined,
    architecture: 'x86_64', rootDeviceType: 'ebs', rootDeviceName: ROOT_DEVICE,
    blockDeviceMapping: list(r.state === 'terminated' ? [] : [{
      deviceName: ROOT_DEVICE,
      ebs: { volumeId: `vol-${createHash('sha256').update(r.id).digest('hex').slice(0, 17)}`, status: 'attached', attachTime: new Date(r.launch_time), deleteOnTermination: true },
    }, ...volumes.map((v) => ({
      deviceName: v.device ?? '',
      ebs: { volumeId: v.id, status: 'attached', attachTime: new Date(v.attach_time ?? v.created), deleteOnTermination: false },
    }))]),
    virtualizationType: 'hvm', clientToken: r.client_token ?? '', tagSet: tags.length > 0 ? tagSet(tags) : undefined,
    hypervisor: 'xen', groupSet: network.groupSet(nic),
    networkInterfaceSet: list(nic ? [instanceInterfaceXml(network, nic, r)] : []), sourceDestCheck: nic ? true : undefined,
    cpuOptions: { coreCount: r.vcpus, threadsPerCore: 1 },
    metadataOptions: { state: 'applied', httpTokens: 'optional', httpPutResponseHopLimit: 1, httpEndpoint: 'disabled' },
    bootMode: 'legacy-bios', currentInstanceBootMode: 'legacy-bios',
    hibernationOptions: { configured: r.hibernation_configured === 1 }, enclaveOptions: { enabled: false },
  };
}

function reservationsXml(ctx: ApiContext, rows: readonly InstanceRow[]): XmlNode[] {
  const rel = related(ctx);
  const byReservation = new Map<string, InstanceRow[]>();
  for (const r of rows) byReservation.set(r.reservation, [...(byReservation.get(r.reservation) ?? []), r]);
  return [...byReservation].map(([id, members]) => ({
    reservationId: id, ownerId: ctx.account.id, groupSet: list([]), instancesSet: list(members.map((m) => instanceXml(ctx, m, rel))),
  }));
}

/** The instances named by InstanceId.N, all of which must be this account's. */
function named(ctx: ApiContext, required: boolean): InstanceRow[] | undefined {
  const ids = ctx.params.list('InstanceId');
  if (ids.length === 0) {
    if (required) throw missing('InstanceId');
    return undefined;
  }
  const malformed = ids.filter((id) => !wellFormed('i', id));
  if (malformed.length > 0) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${malformed[0]}"`);
  const rows = ids.map((id) => ctx.store.instance(ctx.account.id, id));
  const absent = ids.filter((_, i) => !rows[i]);
  if (absent.length > 0) {
    throw new Ec2Error('InvalidInstanceID.NotFound', `The instance ID${absent.length > 1 ? 's' : ''} '${absent.join(', ')}' ${absent.length > 1 ? 'do' : 'does'} not exist`);
  }
  return rows as InstanceRow[];
}

/** The root volume's size: the image's own (as its AMI's block device mapping says), or what the mapping asks. */
function rootSize(ctx: ApiContext, imageGiB: number): number {
  let size = imageGiB;
  for (const i of ctx.params.indexes('BlockDeviceMapping')) {
    const device = ctx.params.optional(`BlockDeviceMapping.${i}.DeviceName`);
    if (!device) throw missing(`BlockDeviceMapping.${i}.DeviceName`);
    if (!ROOT_NAMES.includes(device)) {
      throw new Ec2Error('InvalidBlockDeviceMapping', `Device ${device}: only the root device (${ROOT_DEVICE}) can be mapped at launch; attach volumes afterwards`);
    }
    size = ctx.params.int(`BlockDeviceMapping.${i}.Ebs.VolumeSize`, size, 1, MAX_ROOT_GIB) ?? size;
    if (size < imageGiB) throw invalid(`Volume of ${size} GiB is smaller than the image's ${imageGiB} GiB`);
  }
  return size;
}

/**
 * RunInstances' HibernationOptions.Configured. Nitro Enclaves are refused, and together with hibernation refused as
 * EC2 refuses that combination (an instance cannot have both), before the lone refusal of a feature this host lacks.
 */
function launchHibernation(p: ApiContext['params']): boolean {
  const hibernation = p.bool('HibernationOptions.Configured', false);
  const enclaves = p.bool('EnclaveOptions.Enabled', false);
  if (hibernation && enclaves) {
    throw new Ec2Error('UnsupportedHibernationConfiguration',
      'Hibernation and Nitro Enclaves cannot both be enabled on one instance: set HibernationOptions.Configured or EnclaveOptions.Enabled, not both');
  }
  if (enclaves) {
    throw new Ec2Error('Unsupported', 'Nitro Enclaves are not available on this host: launch without EnclaveOptions.Enabled');
  }
  return hibernation;
}

export const runInstances: Action = (c) => {
  const ctx = c as InstanceActionsContext;
  const p = ctx.params;
  const imageId = p.required('ImageId');
  const min = p.int('MinCount', undefined, 1, 1000);
  const max = p.int('MaxCount', undefined, 1, 1000);
  if (min === undefined) throw missing('MinCount');
  if (max === undefined) throw missing('MaxCount');
  if (min > max) throw invalid(`MinCount (${min}) must not be greater than MaxCount (${max})`);
  if (!wellFormed('ami', imageId)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${imageId}" (expecting "ami-...")`);
  const image = imageByAmi(imageId);
  if (!image) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${imageId}]' does not exist`);
  const typeName = p.optional('InstanceType') ?? 't3.micro';
  const type = instanceType(typeName);
  if (!type) throw invalid(`Invalid value '${typeName}' for InstanceType.`);
  const cap = ctx.controller.capacity;
  if (type.vcpus > cap.cores || type.memoryMiB > cap.memoryMiB) {
    throw new Ec2Error('Unsupported', `Your requested instance type (${type.name}: ${type.vcpus} vCPUs, ${type.memoryMiB} MiB) is not `
      + `supported on this host, which has ${cap.cores} cores and ${cap.memoryMiB} MiB for instances`);
  }
  const keyName = p.optional('KeyName');
  const key = keyName === undefined ? undefined : ctx.store.keyPairByName(ctx.account.id, keyName);
  if (keyName !== undefined && !key) throw new Ec2Error('InvalidKeyPair.NotFound', `The key pair '${keyName}' does not exist`);
  const userData = p.optional('UserData');
  if (userData !== undefined) {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(userData) || userData.length % 4 !== 0) throw invalid('Invalid BASE64 encoding of user data.');
    if (Buffer.from(userData, 'base64').length > MAX_USER_DATA) throw invalid(`User data is limited to ${MAX_USER_DATA} bytes`);
  }
  const hibernation = launchHibernation(p);
  const zone = p.optional('Placement.AvailabilityZone');
  if (zone !== undefined && zone !== zoneOf(ctx.region)) throw invalid(`Invalid availability zone: [${zone}]`);
  const tags = tagSpecifications(p, 'instance', ['instance', 'volume', 'network-interface']);
  const nicTags = tagSpecifications(p, 'network-interface', ['instance', 'volume', 'network-interface']);
  for (const t of [...tags, ...nicTags]) checkTag(t.key, t.value);
  const net = launchNetwork(ctx, zone ?? zoneOf(ctx.region));
  const rootGiB = rootSize(ctx, imageGiB(image));
  const token = p.optional('ClientToken');
  if (token !== undefined && token.length > 64) throw invalid('ClientToken must be at most 64 characters');
  const request = JSON.stringify([...p.names].filter((n) => n !== 'ClientToken' && n !== 'Action' && n !== 'Version')
    .sort().map((n) => [n, p.optional(n)]));

  return ctx.store.transaction(() => {
    if (token !== undefined) {
      const seen = ctx.store.clientToken(ctx.account.id, token);
      if (seen) {
        if (seen.request !== request) {
          throw new Ec2Error('IdempotentParameterMismatch', `Client token '${token}' was used before with different parameters`);
        }
        const rows = ctx.store.instances(ctx.account.id).filter((r) => r.reservation === seen.reservation);
        return { reservationId: seen.reservation, ownerId: ctx.account.id, groupSet: list([]), instancesSet: list(rows.map((r) => instanceXml(ctx, r))) };
      }
    }
    // The account's limits first (as EC2 checks its quotas before its capacity), then the host's disk and cores.
    const allowed = ctx.quotas.instances(ctx.account.id, type.vcpus, min, max);
    const withDisks = ctx.quotas.disks(ctx.account.id, rootGiB, min, allowed);
    const addresses = availableAddresses(ctx.store, net.subnet);
    if (addresses < min) {
      throw new Ec2Error('InsufficientFreeAddressesInSubnet', `There are not enough free addresses in subnet '${net.subnet.id}' to satisfy the `
        + `requested number of instances: ${addresses} free, ${min} asked`);
    }
    const placed = ctx.lifecycle.place(ctx.account.id, type.vcpus, type.memoryMiB, min, Math.min(withDisks, addresses));
    const reservation = newId('r');
    const now = new Date().toISOString();
    const rows: InstanceRow[] = [];
    for (const [i, cores] of placed.entries()) {
      const id = newId('i');
      ctx.store.addInstance({
        id, account: ctx.account.id, reservation, image_id: imageId, instance_type: type.name, vcpus: type.vcpus,
        memory_mib: type.memoryMiB, root_gib: rootGiB, state: 'pending', transition_reason: '', state_reason_code: 'pending',
        state_reason_message: 'pending', key_name: keyName ?? null, user_data: userData ?? null, launch_index: i, launch_time: now,
        client_token: token ?? null, private_ip: null, mac: null, cores: cores.join(','), terminated_at: null,
        hibernation_configured: hibernation ? 1 : 0,
      });
      for (const t of tags) ctx.store.setTag(ctx.account.id, { resource_id: id, resource_type: 'instance', key: t.key, value: t.value });
      const nic = attachInterface(ctx.store, ctx.account.id, id, net);
      for (const t of nicTags) ctx.store.setTag(ctx.account.id, { resource_id: nic.id, resource_type: 'network-interface', key: t.key, value: t.value });
      rows.push(ctx.store.instance(ctx.account.id, id) as InstanceRow);
    }
    if (token !== undefined) ctx.store.addClientToken(ctx.account.id, token, reservation, request);
    for (const r of rows) ctx.lifecycle.start(r, key?.public_key);
    return { reservationId: reservation, ownerId: ctx.account.id, groupSet: list([]), instancesSet: list(rows.map((r) => instanceXml(ctx, r))) };
  });
};

const INSTANCE_FILTERS: Record<string, (r: InstanceRow) => Array<string | undefined>> = {
  'instance-id': (r) => [r.id],
  'instance-state-name': (r) => [r.state],
  'instance-state-code': (r) => [String(STATE_CODES[r.state])],
  'instance-type': (r) => [r.instance_type],
  'image-id': (r) => [r.image_id],
  'key-name': (r) => [r.key_name ?? undefined],
  'reservation-id': (r) => [r.reservation],
  'private-ip-address': (r) => [r.private_ip ?? undefined],
  'availability-zone': () => [],
  'launch-index': (r) => [String(r.launch_index)],
  'client-token': (r) => [r.client_token ?? undefined],
};

/** The filters on an instance's network, answered from its interface. */
function networkFilters(view: NetworkView): Record<string, (r: InstanceRow) => Array<string | undefined>> {
  const nic = (r: InstanceRow) => view.interfaceOf(r.id);
  const groupIds = (r: InstanceRow): string[] => { const n = nic(r); return n ? view.groupsOf(n).map((g) => g.id) : []; };
  const groupNames = (r: InstanceRow): string[] => { const n = nic(r); return n ? view.groupsOf(n).map((g) => g.name) : []; };
  return {
    'vpc-id': (r) => [nic(r)?.vpc_id], 'subnet-id': (r) => [nic(r)?.subnet_id],
    'instance.group-id': groupIds, 'instance.group-name': groupNames, 'group-id': groupIds, 'group-name': groupNames,
    'network-interface.network-interface-id': (r) => [nic(r)?.id], 'network-interface.subnet-id': (r) => [nic(r)?.subnet_id],
    'network-interface.vpc-id': (r) => [nic(r)?.vpc_id], 'network-interface.group-id': groupIds, 'network-interface.group-name': groupNames,
    'network-interface.attachment.attachment-id': (r) => [nic(r)?.attachment_id],
    'network-interface.mac-address': (r) => [nic(r) ? shownAddress(r).mac : undefined],
    'network-interface.addresses.private-ip-address': (r) => [nic(r) ? shownAddress(r).ip : undefined],
  };
}

export const describeInstances: Action = (ctx) => {
  const filters = ctx.params.filters();
  const named_ = named(ctx, false);
  if (named_ && ctx.params.optional('MaxResults') !== undefined) {
    throw new Ec2Error('InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
  }
  const rel = filters.length > 0 ? related(ctx) : undefined;
  const fields = { ...INSTANCE_FILTERS, 'availability-zone': () => [zoneOf(ctx.region)], ...(rel ? networkFilters(rel.network) : {}) };
  const rows = applyFilters(named_ ?? ctx.store.instances(ctx.account.id), filters, fields, (r) => rel?.tags.get(r.id) ?? []);
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return { reservationSet: list(reservationsXml(ctx, page)), nextToken: next };
};

export const describeInstanceStatus: Action = (ctx) => {
  const all = ctx.params.bool('IncludeAllInstances', false);
  const named_ = named(ctx, false);
  const rows = applyFilters((named_ ?? ctx.store.instances(ctx.account.id)).filter((r) => all || r.state === 'running'),
    ctx.params.filters(), {
      'instance-state-name': (r) => [r.state], 'instance-state-code': (r) => [String(STATE_CODES[r.state])],
      'availability-zone': () => [zoneOf(ctx.region)],
      'instance-status.status': (r) => [r.state === 'running' ? 'ok' : 'not-applicable'],
      'system-status.status': (r) => [r.state === 'running' ? 'ok' : 'not-applicable'],
    });
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  const status = (r: InstanceRow): XmlNode => r.state === 'running'
    ? { status: 'ok', details: list([{ name: 'reachability', status: 'passed' }]) }
    : { status: 'not-applicable' };
  return {
    instanceStatusSet: list(page.map((r) => ({
      instanceId: r.id, availabilityZone: zoneOf(ctx.region), instanceState: state(r.state),
      systemStatus: status(r), instanceStatus: status(r),
    }))),
    nextToken: next,
  };
};

/** The state change of each named instance, as Start/Stop/TerminateInstances report it. */
function transition(ctx: InstanceActionsContext, act: (r: InstanceRow) => void): XmlNode[] {
  const rows = named(ctx, true) ?? [];
  return rows.map((before) => {
    act(before);
    const after = ctx.store.instance(ctx.account.id, before.id) as InstanceRow;
    return { instanceId: before.id, currentState: state(after.state), previousState: state(before.state) };
  });
}

function refuse(r: InstanceRow, action: string): never {
  throw new Ec2Error('IncorrectInstanceState', `The instance '${r.id}' is not in a state from which it can be ${action}.`);
}

export const stopInstances: Action = (c) => {
  const ctx = c as InstanceActionsContext;
  const rows = named(ctx, true) ?? [];
  for (const r of rows) if (r.state === 'terminated' || r.state === 'shutting-down') refuse(r, 'stopped');
  // As EC2: Force skips the guest's shutdown, also for an instance already stopping (a hibernation that hangs
  // included: it is then stopped, its memory lost); with Hibernate, a hibernation that fails is followed by a forced stop.
  const force = ctx.params.bool('Force', false);
  const hibernate = ctx.params.bool('Hibernate', false);
  if (hibernate) {
    const unconfigured = rows.find((r) => r.hibernation_configured !== 1);
    if (unconfigured) {
      throw new Ec2Error('UnsupportedHibernationConfiguration',
        `The instance ${unconfigured.id} cannot hibernate: it was not configured for hibernation at launch (HibernationOptions.Configured)`);
    }
  }
  return { instancesSet: list(transition(ctx, (r) => {
    if (r.state === 'pending' || r.state === 'running') {
      if (hibernate) ctx.lifecycle.hibernate(r, force);
      else ctx.lifecycle.stop(r, force);
    } else if (force && r.state === 'stopping') ctx.lifecycle.stop(r, force);
  })) };
};

export const startInstances: Action = (c) => {
  const ctx = c as InstanceActionsContext;
  const rows = named(ctx, true) ?? [];
  for (const r of rows) if (r.state === 'terminated' || r.state === 'shutting-down' || r.state === 'stopping') refuse(r, 'started');
  return ctx.store.transaction(() => {
    // Each counts against the account's limits and takes its cores in turn (a placed one holds them for the next); if
    // one does not fit, nothing has started
    // and the transaction undoes the others.
    const starting = rows.filter((r) => r.state === 'stopped');
    for (const r of starting) {
      ctx.quotas.instances(ctx.account.id, r.vcpus, 1, 1);
      const [cores] = ctx.lifecycle.place(ctx.account.id, r.vcpus, r.memory_mib, 1, 1);
      ctx.store.updateInstance(r.id, { state: 'pending', transition_reason: '', state_reason_code: 'pending', state_reason_message: 'pending',
        launch_time: new Date().toISOString(), cores: (cores ?? []).join(',') });
    }
    for (const r of starting) ctx.lifecycle.start(ctx.store.instance(ctx.account.id, r.id) as InstanceRow, ctx.lifecycle.keyOf(r));
    return {
      instancesSet: list(rows.map((before) => ({
        instanceId: before.id, currentState: state((ctx.store.instance(ctx.account.id, before.id) as InstanceRow).state), previousState: state(before.state),
      }))),
    };
  });
};

export const terminateInstances: Action = (c) => {
  const ctx = c as InstanceActionsContext;
  return { instancesSet: list(transition(ctx, (r) => { if (r.state !== 'terminated' && r.state !== 'shutting-down') ctx.lifecycle.terminate(r); })) };
};

export const rebootInstances: Action = (c) => {
  const ctx = c as InstanceActionsContext;
  const rows = named(ctx, true) ?? [];
  for (const r of rows) if (r.state === 'terminated' || r.state === 'shutting-down') refuse(r, 'rebooted');
  for (const r of rows) if (r.state === 'running') ctx.lifecycle.reboot(r);
  return { return: true };
};

export const getConsoleOutput: Action = (ctx) => {
  const id = ctx.params.required('InstanceId');
  if (!wellFormed('i', id)) throw new Ec2Error('InvalidInstanceID.Malformed', `Invalid id: "${id}"`);
  const row = ctx.store.instance(ctx.account.id, id);
  if (!row) throw notFound('InvalidInstanceID.NotFound', 'instance ID', id);
  const out = ctx.controller.consoleOutput(id);
  return { instanceId: id, timestamp: new Date(), output: out.length > 0 ? out.toString('base64') : undefined };
};
