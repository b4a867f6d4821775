/**
 * Atomic file replacement: readers of `target` see either the old file or the complete new one,
 * never a half-written file, and a failed write leaves an existing target untouched.
 *
 * The content goes to a uniquely named temporary file in the same directory (rename is only atomic
 * within one file system), which is fsynced, renamed over the target, and then the directory is
 * fsynced so the rename itself survives a crash. On any failure the temporary file is removed; on
 * SIGINT/SIGTERM/SIGHUP too, and those a killed process left are swept before the next write to the
 * same folder (temp-files.ts). Only regular files are replaced: a target that is a directory, a
 * device (/dev/full), a pipe or a socket is refused before anything is written; a symbolic link
 * to a regular file is kept and the file it points to is replaced.
 */

import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ArgumentError, IoError, SvdquantError } from '../errors.js';
import { resolveOutputFile } from './output-path.js';
import { sweepStaleTemps, tempPathFor, trackTemp, untrackTemp } from './temp-files.js';

export { ATOMIC_TEMP_PREFIX, ATOMIC_TEMP_SUFFIX } from './temp-files.js';

export interface AtomicWriteOptions {
  /** Permission bits for the new file (before the umask); default 0o666. */
  readonly mode?: number;
}

/**
 * Creates or replaces `target` with the content that `write` puts into the (empty) file handle it
 * receives. `write` should use positional writes; it must not close the handle. File-system errors
 * become IoError naming `target`; other errors thrown by `write` propagate unchanged.
 */
export async function writeFileAtomic(
  target: string,
  write: (file: FileHandle) => Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  if (typeof target !== 'string' || target.length === 0) {
    throw new ArgumentError('target', 'a non-empty file path string', target);
  }
  if (typeof write !== 'function') throw new ArgumentError('write', 'a function', write);
  const mode = options.mode ?? 0o666;

  // Refuses devices, directories, pipes and unusable folders before anything is created.
  const destination = await resolveOutputFile(target);
  const directory = dirname(destination);
  await sweepStaleTemps(directory);
  const tempPath = tempPathFor(destination);

  // Tracked before it exists: a signal that arrives while open() completes must already find it.
  // (Should open finish on its worker thread after the exit handler ran, the sweep of a later write
  // removes the file: its writer is dead by then.)
  trackTemp(tempPath);
  let handle: FileHandle;
  try {
    // 'wx': fail rather than reuse a file that happens to have the same name.
    handle = await open(tempPath, 'wx', mode);
  } catch (cause) {
    untrackTemp(tempPath);
    throw new IoError(target, 'create a temporary file to write', cause);
  }

  let stage = 'write';
  try {
    try {
      await write(handle);
    } catch (error) {
      // File-system failures become IoError; the callback's own errors (e.g. ArgumentError) pass.
      throw isSystemError(error) ? new IoError(target, 'write', error) : error;
    }
    stage = 'flush to disk';
    await handle.sync();
    stage = 'close the temporary file for';
    await handle.close();
    stage = 'move the temporary file into place at';
    await rename(tempPath, destination);
  } catch (error) {
    await handle.close().catch(() => undefined);
    await unlink(tempPath).catch(() => undefined);
    untrackTemp(tempPath);
    if (error instanceof SvdquantError || stage === 'write') throw error;
    throw new IoError(target, stage, error);
  }
  untrackTemp(tempPath);
  await syncDirectory(directory);
}

/** fsync a directory so a rename in it is durable; best effort (not supported everywhere). */
async function syncDirectory(directory: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(directory, 'r');
    await handle.sync();
  } catch {
    // Some platforms and file systems cannot open or fsync directories; the rename is done anyway.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/** A Node.js system error (ENOSPC, EIO, ...), as opposed to a programming or validation error. */
function isSystemError(error: unknown): boolean {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).syscall === 'string';
}
