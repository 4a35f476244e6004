/**
 * Durable file writes for everything the service acknowledges (rulesets,
 * tokens, later profiles and feedback): write a temporary file beside the
 * target, fsync it, rename it over the target, fsync the directory. A crash
 * at any point leaves either the old file or the new one, never a torn one.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync, chmodSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errors } from '../errors.js';

export interface DurableWriteOptions {
  /** File mode (default 0o644; tokens use 0o600). */
  mode?: number;
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    // Some filesystems refuse fsync on directories (EISDIR/EINVAL); the rename is still atomic there.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EISDIR' && code !== 'EINVAL' && code !== 'EPERM') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Atomically replaces `path` with `data` and makes it durable before returning. */
export function writeFileDurable(path: string, data: string | Uint8Array, options: DurableWriteOptions = {}): void {
  const dir = dirname(path);
  const mode = options.mode ?? 0o644;
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    mkdirSync(dir, { recursive: true });
    const fd = openSync(tmp, 'wx', mode);
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmp, mode); // the umask may have narrowed or widened the mode given to open
    renameSync(tmp, path);
    fsyncDir(dir);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw errors.SEL_ERR_STORAGE(`cannot write ${path}: ${(e as Error).message}`, { field: 'path', expected: 'a writable data directory', got: path });
  }
}
