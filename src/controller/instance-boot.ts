// What an instance runs: Azote's init mounts the root disk and runs this script as its command. It unpacks the
// metadata disk (/dev/vdb) into /run/azote/metadata, names the host, installs the key pair's public key for root,
// starts the image's SSH server (images/ssh-server.ts) if it has one, runs the user data (its output on the console,
// as cloud-init's is), and then keeps the instance up until it is stopped. The lines starting "azote-instance:" are
// part of the console contract (guest/ABI.md). The script rides on the kernel command line: it stays short.
import { SSH_SERVER_PATH } from '../images/ssh-server.js';

export const INSTANCE_SCRIPT = [
  'mkdir -p /run/azote/metadata && cd /run/azote/metadata && cpio -i -d -u < /dev/vdb 2>/dev/null',
  'hostname "$(cat hostname)"',
  'echo "azote-instance: $(cat instance-id) ($(cat instance-type), $(cat ami-id)) is up, address ${AZOTE_GUEST_IP:-none}"',
  'if [ -s public-key ]; then mkdir -p /root/.ssh && cp public-key /root/.ssh/authorized_keys && chmod 700 /root/.ssh '
    + '&& chmod 600 /root/.ssh/authorized_keys && echo "azote-instance: key pair installed for root"; fi',
  `if [ -x ${SSH_SERVER_PATH} ]; then ${SSH_SERVER_PATH}; fi`,
  'if [ -s user-data ]; then echo "azote-instance: running user data"; ./user-data; '
    + 'echo "azote-instance: user data exited with status $?"; fi',
  'exec sleep 2147483647',
].join('\n');

export const INSTANCE_ARGV = ['/bin/sh', '-c', INSTANCE_SCRIPT];
