// The command line of a card process started by the controller: `--name value` pairs, some repeatable. (People
// start cards through `azote card`, which has its own help; this is the small parser the cards' own entries use, so
// that a card's signed bundle needs no command-line library.)
import { constants } from 'node:os';
import { AzoteError } from '../base/errors.js';
import * as libc from '../sys/libc.js';

export function cardArgs(argv: readonly string[], known: readonly string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i] ?? '';
    const value = argv[i + 1];
    if (!name.startsWith('--') || !known.includes(name.slice(2)) || value === undefined) {
      throw new AzoteError('BadArguments', `unexpected argument ${JSON.stringify(name)}`, `give --NAME VALUE pairs among ${known.join(', ')}`);
    }
    out.set(name.slice(2), [...(out.get(name.slice(2)) ?? []), value]);
  }
  return out;
}

/**
 * `--controller PID`, the controller that started the card (its parent): the card is killed when that parent dies,
 * so a crashed controller leaves no card holding a volume's lock or the network's addresses. The kernel sends the
 * signal only for a death after the request, so a parent already gone shows as another parent pid: the card ends.
 */
export function dieWithController(args: ReadonlyMap<string, string[]>): void {
  const given = args.get('controller')?.[0];
  if (given === undefined) return;
  const pid = Number(given);
  if (!/^[1-9]\d{0,9}$/.test(given) || pid > 2 ** 31 - 1) {
    throw new AzoteError('BadArguments', `--controller ${JSON.stringify(given)} is not a process id`, 'give the controller\'s pid');
  }
  libc.prctl(libc.PR_SET_PDEATHSIG, constants.signals.SIGKILL);
  if (libc.getppid() !== pid) {
    throw new AzoteError('ControllerGone', `the controller (pid ${pid}) that started this card is gone`, 'start the card from a running controller');
  }
}
