// What an instance runs: Azote's init mounts the root disk and runs this script as its command. It unpacks the
// metadata disk (/dev/vdb) into /run/azote/metadata, names the host, installs the key pair's public key for root,
// starts the SSH server if the image has dropbear (its host keys made on the first boot and kept on the root disk,
// their fingerprints and public keys printed on the console between EC2's markers, as cloud-init prints them, so
// that GetConsoleOutput vouches for them before a first connection), runs the user data (its output on the console,
// as cloud-init's is), and then keeps the instance up until it is stopped. The lines starting "azote-instance:" and
// the host key blocks are part of the console contract (guest/ABI.md). Busybox's sh parses dropbearkey's output
// itself: every program started costs a fork and an exec, slow under nested KVM.

/** Host key types, with the size ssh-keygen -l reports for each (dropbearkey's defaults). */
const HOST_KEYS = [['ecdsa', 256, 'ECDSA'], ['ed25519', 256, 'ED25519'], ['rsa', 2048, 'RSA']] as const;

const SSH_SERVER = [
  'if [ -x /usr/sbin/dropbear ]; then',
  '  fingerprints= keys=',
  ...HOST_KEYS.flatMap(([type, bits, name]) => [
    `  k=/etc/dropbear/dropbear_${type}_host_key`,
    `  [ -s $k ] || dropbearkey -t ${type} -f $k >/dev/null 2>&1`,
    '  while read -r line; do case $line in ssh-*|ecdsa-*) key=$line;; Fingerprint:*) fp=${line#Fingerprint: };; esac; done <<EOF',
    '$(dropbearkey -y -f $k 2>/dev/null)',
    'EOF',
    '  set -- $key',
    `  fingerprints="\${fingerprints}${bits} $fp \${3:-no comment} (${name})\\n" keys="$keys$key\\n"`,
  ]),
  '  printf "%s\\n%b%s\\n%s\\n%b%s\\n" "-----BEGIN SSH HOST KEY FINGERPRINTS-----" "$fingerprints" "-----END SSH HOST KEY FINGERPRINTS-----" '
    + '"-----BEGIN SSH HOST KEY KEYS-----" "$keys" "-----END SSH HOST KEY KEYS-----"',
  '  dropbear -s && echo "azote-instance: SSH server listening on port 22 (keys only)"',
  'fi',
];

export const INSTANCE_SCRIPT = [
  'mkdir -p /run/azote/metadata && cd /run/azote/metadata && cpio -i -d -u < /dev/vdb 2>/dev/null',
  'hostname "$(cat hostname)"',
  'echo "azote-instance: $(cat instance-id) ($(cat instance-type), $(cat ami-id)) is up, address ${AZOTE_GUEST_IP:-none}"',
  'if [ -s public-key ]; then mkdir -p /root/.ssh && cp public-key /root/.ssh/authorized_keys && chmod 700 /root/.ssh '
    + '&& chmod 600 /root/.ssh/authorized_keys && echo "azote-instance: key pair installed for root"; fi',
  ...SSH_SERVER,
  'if [ -s user-data ]; then echo "azote-instance: running user data"; ./user-data; '
    + 'echo "azote-instance: user data exited with status $?"; fi',
  'exec sleep 2147483647',
].join('\n');

export const INSTANCE_ARGV = ['/bin/sh', '-c', INSTANCE_SCRIPT];
