// The default image's SSH server start, installed as SSH_SERVER_PATH: dropbear (keys only), its host keys made on the
// first boot and kept on the root disk, their fingerprints and public keys printed on the console between EC2's
// markers, as cloud-init prints them, so that GetConsoleOutput vouches for them before a first connection (the
// blocks are part of the console contract, guest/ABI.md). Busybox's sh parses dropbearkey's output itself: every
// program started costs a fork and an exec, slow under nested KVM.

export const SSH_SERVER_PATH = '/usr/sbin/azote-ssh-server';

/** Host key types, with the size ssh-keygen -l reports for each (dropbearkey's defaults). */
const HOST_KEYS = [['ecdsa', 256, 'ECDSA'], ['ed25519', 256, 'ED25519'], ['rsa', 2048, 'RSA']] as const;

/** The script, run as root by the instance's boot script (controller/instance-boot.ts). */
export const SSH_SERVER_SCRIPT = [
  '#!/bin/sh',
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
  '',
].join('\n');

