// The one channel type for messages between Azote's processes: a Unix SOCK_SEQPACKET socket pair, so the kernel
// keeps each message whole and carries its descriptors (SCM_RIGHTS). A message is one JSON value of at most
// MAX_MESSAGE_BYTES (larger payloads travel as descriptors, e.g. a sealed memfd), checked by its kind's parser where
// it is received. The peer may be hostile (a hypervisor runs next to a guest): whatever it sends costs the reader
// at most one message's buffer, and a message too long, not JSON, or not a valid message ends the channel with a
// named reason instead of reaching the reader's code. Reads never block: the event loop is told when the socket is
// readable (sys/fd-watcher.ts) and reads a bounded batch before yielding.
import { AzoteError, errorMessage } from '../base/errors.js';
import { MAX_FDS, recvWithFds, sendWithFds, type Received } from '../sys/fd-passing.js';
import { watchReadable, type FdWatch } from '../sys/fd-watcher.js';
import * as libc from '../sys/libc.js';

/** The longest message a channel carries, in bytes of JSON. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** The most descriptors one message carries. */
export const MAX_MESSAGE_FDS = MAX_FDS;
/** Messages read per readiness report before the event loop gets its turn again. */
const READ_BATCH = 32;

/** Why a channel ended other than its peer closing it: `code` names the breach. */
export class ChannelError extends AzoteError {
  constructor(code: 'ChannelMessageTooLarge' | 'ChannelNotJson' | 'ChannelInvalidMessage' | 'ChannelTooManyFds' | 'ChannelFull' | 'ChannelFailed', message: string) {
    super(code, message);
    this.name = 'ChannelError';
  }
}

/** A received value as a message of the channel's protocol, given how many descriptors came with it; undefined if it is none. */
export type MessageParser<T> = (value: unknown, fds: number) => T | undefined;

export interface ChannelEvents<In> {
  /** A valid message and the descriptors that came with it, which are now the receiver's to close. */
  message(m: In, fds: number[]): void;
  /**
   * The channel ended by itself (never after close()): the peer closed its end (no error) or broke the protocol,
   * or could not be written to (the error says how). The socket is closed already.
   */
  end(error: ChannelError | undefined): void;
}

/** A new channel's two ends: non-blocking, close-on-exec SOCK_SEQPACKET sockets. */
export function channelPair(): [number, number] {
  return libc.socketpair(libc.SOCK_SEQPACKET | libc.SOCK_NONBLOCK);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

export class Channel<In, Out> {
  private readonly watch: FdWatch;
  private closed = false;

  /**
   * Owns `fd` (a non-blocking SOCK_SEQPACKET socket, one end of channelPair()) from now on. `peer` names the other
   * end in errors ("the hypervisor of i-0123...").
   */
  constructor(private readonly fd: number, private readonly parse: MessageParser<In>, private readonly events: ChannelEvents<In>,
    private readonly peer: string) {
    this.watch = watchReadable(fd, () => this.readBatch());
  }

  get open(): boolean {
    return !this.closed;
  }

  /**
   * Sends `m` with `fds` (the caller keeps its own copies). False if the channel is closed, or could not take the
   * message: the peer does not read (its socket buffer is full) or is gone; the channel then ends with that reason.
   */
  send(m: Out, fds: readonly number[] = []): boolean {
    if (this.closed) return false;
    const data = encoder.encode(JSON.stringify(m));
    if (data.length > MAX_MESSAGE_BYTES) {
      throw new AzoteError('ChannelMessageTooLarge', `a message of ${data.length} bytes for ${this.peer}; at most ${MAX_MESSAGE_BYTES}`,
        'send large data as a descriptor (a sealed memfd)');
    }
    try {
      if (sendWithFds(this.fd, data, fds)) return true;
      this.end(new ChannelError('ChannelFull', `${this.peer} does not read its channel (its socket buffer is full)`));
    } catch (e) {
      this.end(peerGone(e) ? undefined : new ChannelError('ChannelFailed', `cannot write to ${this.peer}: ${errorMessage(e)}`));
    }
    return false;
  }

  /**
   * Receives at once what has arrived already, instead of when the watcher thread reports it: for a process that
   * starts on its first message while that thread is still starting (tens of ms).
   */
  receivePending(): void {
    if (!this.closed) this.readBatch();
  }

  /** Closes the socket; nothing more is received or reported. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watch.close();
    libc.close(this.fd);
  }

  private end(error: ChannelError | undefined): void {
    if (this.closed) return;
    this.close();
    // Reported on a later turn: the owner may be in the middle of send() or of handling a message.
    queueMicrotask(() => this.events.end(error));
  }

  private readBatch(): void {
    for (let i = 0; i < READ_BATCH && !this.closed; i++) {
      let r: Received | undefined;
      try {
        r = recvWithFds(this.fd, MAX_MESSAGE_BYTES);
      } catch (e) {
        const tooMany = e instanceof AzoteError && e.code === 'TooManyFds';
        if (peerGone(e)) this.end(undefined);
        else this.end(new ChannelError(tooMany ? 'ChannelTooManyFds' : 'ChannelFailed',
          tooMany ? `${this.peer} sent more than ${MAX_MESSAGE_FDS} descriptors in one message` : `cannot read from ${this.peer}: ${errorMessage(e)}`));
        return;
      }
      if (r === undefined) break;
      // A seqpacket socket reads as empty once its peer has closed (and an empty message is none of ours).
      const gone = r.data.length === 0 && !r.truncated;
      let m: In | undefined;
      try {
        if (!gone) m = this.decode(r);
      } catch (e) {
        if (!(e instanceof ChannelError)) throw e;
        this.end(e);
      }
      if (m === undefined) {
        for (const fd of r.fds) libc.close(fd);
        if (gone) this.end(undefined);
        return;
      }
      this.events.message(m, r.fds);
    }
    if (!this.closed) this.watch.arm();
  }

  /** The message `r` holds; throws a ChannelError for a breach of the protocol. */
  private decode(r: Received): In {
    if (r.truncated) throw new ChannelError('ChannelMessageTooLarge', `${this.peer} sent a message longer than ${MAX_MESSAGE_BYTES} bytes`);
    let value: unknown;
    try {
      value = JSON.parse(utf8.decode(r.data));
    } catch {
      throw new ChannelError('ChannelNotJson', `${this.peer} sent ${r.data.length} bytes that are not a JSON message`);
    }
    const m = this.parse(value, r.fds.length);
    if (m === undefined) throw new ChannelError('ChannelInvalidMessage', `${this.peer} sent an invalid message${describe(value)}`);
    return m;
  }
}

/** The error of a write or read on a socket whose peer has closed: the channel simply ended. */
function peerGone(e: unknown): boolean {
  return e instanceof libc.SysError && (e.code === 'EPIPE' || e.code === 'ECONNRESET');
}

/** A short hint at what an invalid message was, for the log (its kind, if it has a short one). */
function describe(value: unknown): string {
  const kind = typeof value === 'object' && value !== null ? (value as Record<string, unknown>).kind : undefined;
  return typeof kind === 'string' && kind.length <= 32 ? ` (kind ${JSON.stringify(kind)})` : '';
}
