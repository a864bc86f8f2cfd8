// Helpers for tests of real instances through the SDK: the default image's AMI, the console until it says
// something, and the SSH host key blocks EC2 prints there.
import assert from 'node:assert/strict';
import * as sdk from '@aws-sdk/client-ec2';
import { amiId, images } from '../../src/control-plane/catalogue.js';

export function defaultAmi(): string {
  const image = images().find((i) => i.name === 'default');
  assert.ok(image, 'the default image (azote image build)');
  return amiId(image);
}

/**
 * The instance's console once it matches `re` or `re` says it is ready (polled once a second, for at most
 * `seconds`: only to detect a hang).
 */
export async function consoleUntil(ec2: sdk.EC2Client, id: string, re: RegExp | ((text: string) => boolean), seconds = 300): Promise<string> {
  const ready = typeof re === 'function' ? re : (text: string): boolean => re.test(text);
  let text = '';
  for (let i = 0; i < seconds; i++) {
    const out = await ec2.send(new sdk.GetConsoleOutputCommand({ InstanceId: id }));
    text = Buffer.from(out.Output ?? '', 'base64').toString('utf8');
    if (ready(text)) return text;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (re instanceof RegExp) assert.match(text, re, `console of ${id}`);
  else assert.fail(`console of ${id} is not what was waited for:\n${text}`);
  return text;
}

/** The SSH host key blocks of a console (the last boot's), as `ssh-keygen -l` lines and OpenSSH public keys. */
export function hostKeys(text: string): { fingerprints: string[]; keys: string[] } {
  const block = (name: string): string[] => {
    const all = [...text.matchAll(new RegExp(`-----BEGIN SSH HOST KEY ${name}-----\\r?\\n([\\s\\S]*?)-----END SSH HOST KEY ${name}-----`, 'g'))];
    return (all.at(-1)?.[1] ?? '').split(/\r?\n/).filter(Boolean);
  };
  return { fingerprints: block('FINGERPRINTS'), keys: block('KEYS') };
}
