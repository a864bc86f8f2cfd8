// One owner per resource: whatever holds an fd, a worker or a mapping registers how to release it in a store, and
// the store releases everything once, newest first. A resource handed to someone else leaves the store first
// (take()), so teardown can neither leak nor close twice what now belongs to another owner.

export interface Disposable {
  dispose(): void;
}

export class DisposableStore implements Disposable {
  private readonly items: Disposable[] = [];
  private disposed = false;

  /** Registers `d`; a store already disposed releases it at once (its owner is gone). */
  add<T extends Disposable>(d: T): T {
    if (this.disposed) d.dispose();
    else this.items.push(d);
    return d;
  }

  /** Registers a release function. */
  defer(release: () => void): void {
    this.add({ dispose: release });
  }

  /** Removes `d` without releasing it: its new owner will. */
  take<T extends Disposable>(d: T): T {
    const i = this.items.lastIndexOf(d);
    if (i >= 0) this.items.splice(i, 1);
    return d;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** Releases everything, newest first; a release that throws does not stop the others (the first error is rethrown). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    let first: unknown;
    for (const d of this.items.splice(0).reverse()) {
      try {
        d.dispose();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }
}

/** An fd with one owner: closed once, by dispose(), unless handed over with release(). */
export class OwnedFd implements Disposable {
  private current: number | undefined;

  constructor(fd: number, private readonly closeFd: (fd: number) => void) {
    this.current = fd;
  }

  get fd(): number {
    if (this.current === undefined) throw new Error('the fd was closed or handed over');
    return this.current;
  }

  /** Gives the fd away: this owner no longer closes it. */
  release(): number {
    const fd = this.fd;
    this.current = undefined;
    return fd;
  }

  dispose(): void {
    const fd = this.current;
    this.current = undefined;
    if (fd !== undefined) this.closeFd(fd);
  }
}
