/**
 * An output file written as a stream (decisions, a generated data set) and
 * put in place whole: the bytes go to a temporary file beside it, which
 * replaces the file only once complete (fsynced, renamed). A run that fails
 * or is interrupted (Ctrl-C, SIGTERM) leaves the file as it was before, not
 * a shorter file that looks complete, and never truncates an earlier one.
 */
import { createWriteStream, fsyncSync, openSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import { errors } from '../errors.js';
import { fsyncDir, tempPathFor } from './durable.js';

/** Outputs not yet committed or discarded: removed if a signal ends the process. */
const pending = new Set<AtomicOutput>();

function onSignal(signal: NodeJS.Signals): void {
  for (const o of [...pending]) o.discard();
  // then die of the signal as the process would have without this handler (exit status 128 + n)
  process.kill(process.pid, signal);
}

function watchSignals(on: boolean): void {
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    if (on) process.once(s, onSignal);
    else process.removeListener(s, onSignal);
  }
}

/**
 * Resolves once a stream whose write() returned false has room again, or
 * has failed or closed (then it never drains): the caller checks which,
 * from the error it keeps. events.once('drain') would reject on an error
 * and hang on a close.
 */
export function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise<void>((resolve) => {
    const go = () => { stream.off('drain', go); stream.off('error', go); stream.off('close', go); resolve(); };
    stream.on('drain', go).on('error', go).on('close', go);
  });
}

export class AtomicOutput {
  /** Where the bytes go until commit(). */
  readonly stream: WriteStream;
  private readonly tmp: string;
  private readonly fd: number;
  private failure: Error | undefined;
  private done = false;

  /** `option` names the command-line option the path came from, for the errors. */
  constructor(readonly path: string, readonly option: string) {
    this.tmp = tempPathFor(path);
    // the signal handlers first: a signal between the file's creation and their installation ended the
    // process by the system's default action and left the temporary file (seen once under load)
    if (pending.size === 0) watchSignals(true);
    try {
      this.fd = openSync(this.tmp, 'wx', 0o666); // the umask decides, as for durable writes
    } catch (e) {
      if (pending.size === 0) watchSignals(false);
      throw errors.SEL_ERR_OPTION_INVALID(`cannot write --${option} ${path}: ${(e as Error).message}`, { field: option, expected: 'a writable file path (its directory must exist)', got: path });
    }
    pending.add(this);
    this.stream = createWriteStream('', { fd: this.fd, autoClose: false });
    // kept, and thrown by the next write() or by commit(): an error nobody waits for would end the process
    this.stream.on('error', (e) => { this.failure ??= e; });
  }

  private failed(e: Error): never {
    this.discard();
    throw errors.SEL_ERR_STORAGE(`cannot write --${this.option} ${this.path}: ${e.message}`, { field: this.option, expected: 'room on a writable disk', got: (e as NodeJS.ErrnoException).code ?? this.path });
  }

  /** Writes text, waiting while the stream is full; throws SEL_ERR_STORAGE (and discards the file) when writing failed. */
  async write(text: string): Promise<void> {
    if (this.failure) this.failed(this.failure);
    if (!this.stream.write(text)) {
      await drained(this.stream);
      if (this.failure) this.failed(this.failure);
    }
  }

  /** Ends the file and puts it in place (fsynced, renamed over `path`); throws SEL_ERR_STORAGE if any write failed. */
  async commit(): Promise<void> {
    if (this.done) return;
    if (!this.failure) {
      await new Promise<void>((resolve) => {
        const go = () => { this.stream.off('finish', go); this.stream.off('error', go); resolve(); };
        this.stream.on('finish', go).on('error', go);
        this.stream.end();
      });
    }
    if (this.failure) this.failed(this.failure);
    try {
      fsyncSync(this.fd);
      // the stream owns the descriptor: closed by it, once (closed here as well, a later close by the
      // stream would close whatever file had been given the same number meanwhile)
      await new Promise<void>((resolve, reject) => {
        this.stream.once('close', resolve).once('error', reject);
        this.stream.destroy();
      });
      renameSync(this.tmp, this.path);
      fsyncDir(dirname(this.path));
    } catch (e) {
      this.failed(e as Error);
    }
    this.done = true;
    this.forget();
  }

  /** Drops what was written; the file at `path` stays as it was. Synchronous, so that a signal handler can call it. */
  discard(): void {
    if (this.done) return;
    this.done = true;
    this.stream.destroy(); // closes the descriptor (not closeSync here: see commit)
    try { rmSync(this.tmp, { force: true }); } catch { /* nothing to remove */ }
    this.forget();
  }

  private forget(): void {
    pending.delete(this);
    if (pending.size === 0) watchSignals(false);
  }
}
