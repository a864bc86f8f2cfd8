// Whether a process is still there: signal 0 checks without sending anything. EPERM means it exists but belongs to
// another user (a jailed process, or another user's run), which is alive all the same.

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
