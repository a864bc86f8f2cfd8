// The host terminal as the guest's serial console: raw mode when it is a terminal, and the escape sequence
// Ctrl-A x to stop the VM (Ctrl-A Ctrl-A sends a literal Ctrl-A).

const CTRL_A = 0x01;

export interface ConsoleInput {
  /** Reading resumes after `send` asked for a pause by returning false. */
  resume(): void;
  close(): void;
}

export function attachConsole(send: (bytes: Uint8Array) => boolean, quit: () => void): ConsoleInput {
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) stdin.setRawMode(true);
  let escape = false;
  const onData = (chunk: Buffer): void => {
    if (!tty) {
      if (!send(chunk)) stdin.pause();
      return;
    }
    const out: number[] = [];
    for (const b of chunk) {
      if (escape) {
        escape = false;
        if (b === 0x78 /* x */ || b === 0x58) { quit(); return; }
        out.push(CTRL_A);
        if (b !== CTRL_A) out.push(b);
      } else if (b === CTRL_A) {
        escape = true;
      } else {
        out.push(b);
      }
    }
    if (out.length > 0 && !send(Uint8Array.from(out))) stdin.pause();
  };
  stdin.on('data', onData);
  stdin.resume();
  return {
    resume(): void {
      stdin.resume();
    },
    close(): void {
      stdin.off('data', onData);
      if (tty) stdin.setRawMode(false);
      stdin.pause();
    },
  };
}
