// The command line of a card process started by the controller: `--name value` pairs, some repeatable. (People
// start cards through `azote card`, which has its own help; this is the small parser the cards' own entries use, so
// that a card's signed bundle needs no command-line library.)
import { AzoteError } from '../base/errors.js';

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
