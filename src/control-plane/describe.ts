// What the host offers: DescribeRegions, DescribeAvailabilityZones, DescribeImages, DescribeInstanceTypes.
import { imageGiB, images, INSTANCE_TYPES } from './catalogue.js';
import { applyFilters, paginate, zoneIdOf, zoneOf, type Action } from './context.js';
import { Ec2Error } from './errors.js';
import { wellFormed } from './ids.js';
import { list } from './xml.js';

export const describeRegions: Action = (ctx) => {
  const names = ctx.params.list('RegionName');
  for (const n of names) if (n !== ctx.region) throw new Ec2Error('InvalidParameterValue', `Invalid region: ${n}`);
  return { regionInfo: list([{ regionName: ctx.region, regionEndpoint: `ec2.${ctx.region}.amazonaws.com`, optInStatus: 'opt-in-not-required' }]) };
};

export const describeAvailabilityZones: Action = (ctx) => {
  const zone = zoneOf(ctx.region);
  const names = ctx.params.list('ZoneName');
  for (const n of names) if (n !== zone) throw new Ec2Error('InvalidParameterValue', `Invalid availability zone: [${n}]`);
  return {
    availabilityZoneInfo: list([{
      optInStatus: 'opt-in-not-required', zoneName: zone, zoneId: zoneIdOf(ctx.region), zoneState: 'available', regionName: ctx.region,
      groupName: ctx.region, networkBorderGroup: ctx.region, zoneType: 'availability-zone', messageSet: list([]),
    }]),
  };
};

export const describeImages: Action = (ctx) => {
  const all = images();
  const ids = ctx.params.list('ImageId');
  for (const id of ids) {
    if (!wellFormed('ami', id)) throw new Ec2Error('InvalidAMIID.Malformed', `Invalid id: "${id}" (expecting "ami-...")`);
    if (!all.some((i) => i.amiId === id)) throw new Ec2Error('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`);
  }
  const chosen = ids.length > 0 ? all.filter((i) => ids.includes(i.amiId)) : all;
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'image-id': (i) => [i.amiId], name: (i) => [i.name], architecture: () => ['x86_64'], state: () => ['available'],
    'image-type': () => ['machine'], 'root-device-type': () => ['ebs'], 'virtualization-type': () => ['hvm'],
    'is-public': () => ['true'],
  });
  const { page, next } = paginate(ctx.params, rows, 5, 1000);
  return {
    imagesSet: list(page.map((i) => ({
      imageId: i.amiId, imageLocation: `azote/${i.name}`, imageState: 'available', imageOwnerId: 'azote', creationDate: new Date(i.created),
      isPublic: true, architecture: 'x86_64', imageType: 'machine', name: i.name,
      description: `Azote image ${i.name} (${i.id}): ${i.contents.join(', ')}`.slice(0, 255),
      rootDeviceType: 'ebs', rootDeviceName: '/dev/xvda',
      blockDeviceMapping: list([{ deviceName: '/dev/xvda', ebs: { volumeSize: imageGiB(i), deleteOnTermination: true, volumeType: 'gp3', encrypted: false } }]),
      virtualizationType: 'hvm', hypervisor: 'xen', enaSupport: false, sriovNetSupport: 'simple', bootMode: 'legacy-bios',
    }))),
    nextToken: next,
  };
};

export const describeInstanceTypes: Action = (ctx) => {
  const names = ctx.params.list('InstanceType');
  for (const n of names) {
    if (!INSTANCE_TYPES.some((t) => t.name === n)) throw new Ec2Error('InvalidInstanceType', `The following supplied instance types do not exist: [${n}]`);
  }
  const cap = ctx.controller.capacity;
  // Types this host cannot hold at all are not offered.
  const offered = INSTANCE_TYPES.filter((t) => t.vcpus <= cap.cores && t.memoryMiB <= cap.memoryMiB);
  const chosen = names.length > 0 ? offered.filter((t) => names.includes(t.name)) : offered;
  const rows = applyFilters(chosen, ctx.params.filters(), {
    'instance-type': (t) => [t.name], 'vcpu-info.default-vcpus': (t) => [String(t.vcpus)], 'memory-info.size-in-mib': (t) => [String(t.memoryMiB)],
    'current-generation': () => ['true'], 'processor-info.supported-architecture': () => ['x86_64'],
  });
  const { page, next } = paginate(ctx.params, rows, 5, 100);
  return {
    instanceTypeSet: list(page.map((t) => ({
      instanceType: t.name, currentGeneration: true, freeTierEligible: t.name === 't3.micro',
      supportedUsageClasses: list(['on-demand']), supportedRootDeviceTypes: list(['ebs']), supportedVirtualizationTypes: list(['hvm']),
      bareMetal: false, hypervisor: 'nitro', processorInfo: { supportedArchitectures: list(['x86_64']) },
      vCpuInfo: { defaultVCpus: t.vcpus, defaultCores: t.vcpus, defaultThreadsPerCore: 1 },
      memoryInfo: { sizeInMiB: t.memoryMiB }, instanceStorageSupported: false, ebsInfo: { ebsOptimizedSupport: 'unsupported', encryptionSupport: 'supported' },
      networkInfo: { networkPerformance: 'Up to 5 Gigabit', maximumNetworkInterfaces: 1, ipv4AddressesPerInterface: 1, ipv6Supported: false, enaSupport: 'unsupported' },
      placementGroupInfo: { supportedStrategies: list([]) }, hibernationSupported: false, burstablePerformanceSupported: false,
      dedicatedHostsSupported: false, autoRecoverySupported: false, supportedBootModes: list(['legacy-bios']),
    }))),
    nextToken: next,
  };
};
