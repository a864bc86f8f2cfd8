// The event script busybox's udhcpc runs (at its default path, so that udhcpc needs no option to find it), in the
// initramfs and in the default image alike: udhcpc runs it with the event as $1 and the lease in its environment
// ($interface, $ip, $mask as a prefix length, $router, $dns), and it gives the interface the address, the default
// route through the router and the DNS servers, as a distribution's script does. Guest init starts udhcpc when the
// hypervisor says the network has a DHCP server (azote.net=dhcp, guest/ABI.md). Only busybox's own applets and
// shell: each program started costs a fork and an exec, slow under nested KVM.

export const DHCP_SCRIPT_PATH = '/etc/udhcpc/default.script';

export const DHCP_SCRIPT = [
  '#!/bin/sh',
  'case "$1" in',
  'deconfig)',
  '  ip -4 addr flush dev "$interface"',
  '  ;;',
  'bound|renew)',
  '  ip addr replace "$ip/$mask" dev "$interface"',
  '  [ -z "$router" ] || ip route replace default via "${router%% *}" dev "$interface"',
  '  if [ -n "$dns" ]; then for s in $dns; do echo "nameserver $s"; done > /etc/resolv.conf; fi',
  '  ;;',
  'esac',
  'exit 0',
  '',
].join('\n');
