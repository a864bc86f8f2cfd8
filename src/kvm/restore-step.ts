// Restoring KVM state piece by piece: a piece KVM refuses is named in the error, with the fix.
import { AzoteError, errorMessage } from '../base/errors.js';

/** A runner of named restore steps: each failure becomes AzoteError(code, "restoring <whose> <piece> failed: ...", fix). */
export function restoreSteps(code: string, whose: string, fix: string): (piece: string, restore: () => void) => void {
  return (piece, restore) => {
    try {
      restore();
    } catch (e) {
      throw new AzoteError(code, `restoring ${whose} ${piece} failed: ${errorMessage(e)}`, fix, { cause: e });
    }
  };
}
