// The `azote` command. Subcommands load their modules on demand so that start-up stays short.
import { Command, InvalidArgumentError, Option } from 'commander';
import { AzoteError, errorMessage } from '../base/errors.js';
import { createLogger } from '../base/log.js';
import type { UpCliOptions } from './up.js';

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function positiveNumber(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number (0 picks a free one)');
  return n;
}

/** "BURST/RATE": a token bucket of BURST requests refilled at RATE per second. */
function bucket(v: string): { burst: number; perSecond: number } {
  const m = /^(\d+)\/(\d+(?:\.\d+)?)$/.exec(v);
  const burst = Number(m?.[1]), perSecond = Number(m?.[2]);
  if (!m || burst < 1 || perSecond <= 0) throw new InvalidArgumentError('expected BURST/RATE, e.g. 100/20: a burst of 100 requests, then 20 per second');
  return { burst, perSecond };
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** Azote itself failed (not the guest's command), as `docker run` reports it; 126 and 127 stay the command's. */
const EXIT_AZOTE_FAILED = 125;

const log = createLogger('cli');
const program = new Command('azote')
  .description('Real virtual machines under KVM, on the design of AWS Nitro')
  .showHelpAfterError();

program.command('run')
  .description('boot a microVM and run COMMAND in it (or an interactive shell; Ctrl-A x quits)')
  .option('--vcpus <n>', 'virtual CPUs', positiveInt, 1)
  .option('--mem <MiB>', 'guest memory in MiB', positiveInt, 128)
  .option('--kernel <path>', 'kernel: bzImage or ELF vmlinux with a PVH note (default: Azote\'s guest kernel)')
  .option('--initrd <path>', 'initramfs (default: Azote\'s busybox initramfs)')
  .option('--cmdline <text>', 'kernel command line (replaces the default)')
  .option('-e, --env <KEY=VALUE>', 'environment variable for COMMAND (repeatable)', collect, [])
  .option('--image <name>', 'boot from a fresh copy of this image as /dev/vda (root=/dev/vda); changes end with the VM')
  .option('--disk <path[,ro]>', 'attach a raw disk image as the next /dev/vdX (",ro": read-only; repeatable)', collect, [])
  .option('--volume <socket:name>', 'attach volume NAME of the block card at SOCKET (its vhost-user socket SOCKET:NAME; '
    + 'after the disks; repeatable)', collect, [])
  .option('--net <kind>', 'network: "tap" gives the guest eth0 on a new TAP device (needs CAP_NET_ADMIN); '
    + '"card:SOCKET" attaches eth0 to the network card at SOCKET; the command sees AZOTE_HOST_IP (the gateway) and AZOTE_GUEST_IP')
  .option('--vsock <path>', 'virtio-vsock: host programs reach guest port P by connecting to PATH and sending '
    + '"CONNECT P\\n"; guest connections to CID 2 port P go to PATH_P')
  .option('--no-rng', 'leave out the virtio-rng entropy device')
  .option('--no-jail', 'run the hypervisor unjailed, as your user in your namespaces (for debugging; by default it runs in '
    + 'the controller\'s jail: as root, or in a user namespace)')
  .option('-v, --verbose', 'show the guest kernel\'s boot messages (boots cold)', false)
  .option('--cold', 'boot the guest, even where a snapshot of the booted machine could be continued (by default the first run '
    + 'of a machine saves one where its init waits for the command, and later runs continue it)', false)
  .addOption(new Option('--guest-memory <kind>', 'guest RAM: "secret" (memfd_secret: out of the host kernel\'s direct map, '
    + 'unreadable by other processes), "memfd" (a sealed memfd), or "auto": secret where this host\'s KVM runs guests on it')
    .choices(['auto', 'secret', 'memfd']).default('auto'))
  .option('--boot-time', 'print when the guest\'s init started (or ran again from its snapshot), in ms after process start', false)
  .argument('[command...]', 'command and arguments to run in the guest (after --)')
  .action(async (command: string[], opts) => {
    const { runCommand } = await import('./run.js');
    process.exitCode = await runCommand(command, {
      vcpus: opts.vcpus, mem: opts.mem, kernel: opts.kernel, initrd: opts.initrd, cmdline: opts.cmdline,
      verbose: opts.verbose, bootTime: opts.bootTime, env: opts.env, rng: opts.rng, disks: opts.disk, image: opts.image, net: opts.net, vsock: opts.vsock, volumes: opts.volume,
      jail: opts.jail, cold: opts.cold, guestMemory: opts.guestMemory,
    }, log);
  });

const image = program.command('image').description('root file system images (ext4) for --image');
image.command('build')
  .description('build the default image (busybox, init, dropbear); instant when nothing changed')
  .argument('[name]', 'name to give it', 'default')
  .action(async (name: string) => {
    const { imageBuild } = await import('./image.js');
    await imageBuild(name, log);
  });
image.command('ls')
  .description('list the images in the catalogue')
  .action(async () => {
    const { imageList } = await import('./image.js');
    imageList();
  });

const card = program.command('card').description('Nitro cards: device processes serving VMs over vhost-user');
card.command('block')
  .description('serve volumes (raw files) to VMs over vhost-user: volume NAME on socket PATH:NAME, one VM at a time')
  .requiredOption('--socket <path>', 'where the sockets go: PATH:NAME for each volume')
  .requiredOption('--volume <[name=]file[,ro]>', 'a volume file (",ro": read-only; repeatable)', collect, [])
  .action(async (opts: { socket: string; volume: string[] }) => {
    const { runBlockCard } = await import('./card.js');
    runBlockCard(opts.socket, opts.volume, log);
  });

card.command('net')
  .description('a virtual switch between VMs over vhost-user: each connection to SOCKET is a port with the next '
    + 'address of the subnet, which its guest gets by DHCP; spoofed source MACs are dropped')
  .requiredOption('--socket <path>', 'the vhost-user socket VMs attach to (azote run --net card:PATH)')
  .option('--subnet <cidr>', 'the network: its first address is the gateway (the uplink), the rest go to VMs', '10.77.0.0/24')
  .option('--uplink <tap>', 'switch to the host through this TAP device (created if missing; needs CAP_NET_ADMIN)')
  .action(async (opts: { socket: string; subnet: string; uplink?: string }) => {
    const { runNetCard } = await import('./card.js');
    runNetCard(opts.socket, opts.subnet, opts.uplink, log);
  });

program.command('up')
  .description('run this host\'s controller and the EC2-compatible API (SigV4, state in SQLite under the data directory)')
  .option('--port <n>', 'port of the API (0: any free port)', port, 8787)
  .option('--host <address>', 'address to listen on', '127.0.0.1')
  .option('--data-dir <dir>', 'state, instance disks and console logs (default $AZOTE_DATA_DIR or ~/.local/share/azote)')
  .option('--region <name>', 'the region this host answers as', 'us-east-1')
  .option('--no-uplink', 'give no VPC an uplink to the host (by default the first VPC of each CIDR the host does not route '
    + 'gets a TAP device azvpcN holding its first address, so that the host reaches its instances)')
  .option('--share-cores-within-account', 'let one account\'s instances share physical cores (two accounts never share one)', false)
  .option('--max-instances <n>', 'instances one account may have pending or running (InstanceLimitExceeded; default: 20, '
    + 'or twice the host\'s cores if more)', positiveInt)
  .option('--max-vcpus <n>', 'vCPUs of one account\'s pending and running instances (VcpuLimitExceeded; default: 32, '
    + 'or twice the host\'s cores if more)', positiveInt)
  .option('--max-volume-gib <n>', 'GiB of volumes and root disks one account may have (VolumeLimitExceeded; default: 1024)', positiveInt)
  .option('--disk-overcommit <factor>', 'disks are sparse: the part of all of them not yet written may be this many times the data '
    + 'directory\'s free space (InsufficientVolumeCapacity beyond; default: 1)', positiveNumber)
  .option('--api-rate-describe <burst/rate>', 'each account\'s Describe* and Get* calls: a burst, then a rate per second, '
    + 'beyond which calls get RequestLimitExceeded (default 100/20, as EC2)', bucket)
  .option('--api-rate-mutate <burst/rate>', 'each account\'s other calls: a burst, then a rate per second (default 50/5, as EC2)', bucket)
  .option('--api-max-connections <n>', 'open connections to the API at most (default 256)', positiveInt)
  .action(async (opts: UpCliOptions & { maxInstances?: number; maxVcpus?: number; maxVolumeGib?: number }) => {
    const { runUp } = await import('./up.js');
    const { maxInstances, maxVcpus, maxVolumeGib, ...rest } = opts;
    await runUp({ ...rest, limits: { instances: maxInstances, vcpus: maxVcpus, volumeGiB: maxVolumeGib } }, log);
  });

const account = program.command('account').description('accounts of the EC2 API');
account.command('create')
  .description('create an account; prints its access key id and secret access key (shown once) as environment lines')
  .argument('<name>', 'lower-case letters, digits and "-"')
  .option('--data-dir <dir>', 'the data directory of `azote up`')
  .action(async (name: string, opts: { dataDir?: string }) => {
    const { accountCreate } = await import('./up.js');
    accountCreate(name, opts.dataDir);
  });

const host = program.command('host').description('this host\'s security chip: keys, signed component bundles, measurements, quotes')
  .option('--host-dir <dir>', 'the chip\'s directory (default: DATA_DIR/host)');
const hostDir = (): Promise<string> => import('./host.js').then((m) => (host.opts() as { hostDir?: string }).hostDir ?? m.defaultHostDir());
host.command('init')
  .description('create this host\'s keys (a development release key unless --release-key), component store and registers')
  .option('--release-key <pem>', 'the public half of your own release key (Ed25519 or ECDSA P-384): the root of trust')
  .action(async (opts: { releaseKey?: string }) => (await import('./host.js')).hostInit(await hostDir(), opts.releaseKey));
host.command('components')
  .description('list the installed signed components with their versions and digests')
  .action(async () => (await import('./host.js')).hostComponents(await hostDir()));
host.command('install-bundle')
  .description('install a signed bundle; refuses a bad signature, a changed file or an older build')
  .argument('<bundle>', 'a .tgz made by `azote host bundle` (npm run build)')
  .action(async (bundle: string) => (await import('./host.js')).hostInstall(await hostDir(), bundle));
host.command('bundle')
  .description('build and sign the bundles of this build (hypervisor, cards) with the development release key')
  .option('--out <dir>', 'where the .tgz files go', 'build/bundles')
  .action(async (opts: { out: string }) => (await import('./host.js')).hostBundle(await hostDir(), opts.out));
host.command('attest')
  .description('print a quote of the registers and the event log, signed with the host attestation key')
  .option('--nonce <text>', 'a fresh value from the verifier')
  .action(async (opts: { nonce?: string }) => (await import('./host.js')).hostAttest(await hostDir(), opts.nonce));
host.command('verify')
  .description('check a quote: its signature, and that its event log replays to its registers')
  .argument('<quote>', 'the JSON `azote host attest` printed')
  .option('--key <pem>', 'the attestation public key to trust (default: this host\'s)')
  .action(async (quote: string, opts: { key?: string }) => (await import('./host.js')).hostVerify(await hostDir(), quote, opts.key));

program.command('setup')
  .description('build and cache the guest kernel and initramfs (done automatically on first run)')
  .option('--tests', 'also provision what `npm test` needs: the Debian packages the tests use (installed with apt-get '
    + 'as root, else the command to type is printed) and the default image', false)
  .action(async (opts: { tests: boolean }) => {
    const { setup } = await import('./setup.js');
    await setup({ tests: opts.tests }, log);
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  process.stderr.write(`azote: ${errorMessage(e)}\n`);
  if (!(e instanceof AzoteError) && process.env['AZOTE_LOG_LEVEL'] === 'debug' && e instanceof Error) {
    process.stderr.write(`${e.stack ?? ''}\n`);
  }
  process.exitCode = EXIT_AZOTE_FAILED;
}
