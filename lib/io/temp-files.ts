/**
 * The atomic writer's temporary files: their names, their removal when the process is interrupted,
 * and the sweep of those that a killed process left behind.
 *
 * Name: `.<target name>.<pid>@<host tag>.<random>.svdq-tmp` in the target's folder. The pid and a
 * short hash of the host name say whose file it is, so a later write can tell a dead writer's file
 * (removed) from one another process on this or another machine is still writing (left alone).
 *
 * Interruption: while a temporary file exists, an exit handler (the signal-exit package) removes
 * it when the process exits or gets a fatal signal (SIGINT, SIGTERM, SIGHUP, ...); the signal then
 * ends the process as it would have (the shell sees the conventional status, 130 for Ctrl-C),
 * unless the application listens to that signal itself: then it decides when to exit, and the
 * file is removed on the way out. SIGKILL cannot be caught; sweepStaleTemps covers it.
 */

import { createHash, randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { readdir, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { onExit } from 'signal-exit';

/** Prefix and suffix of temporary files, so tests and cleanup tools can recognise them. */
export const ATOMIC_TEMP_PREFIX = '.';
export const ATOMIC_TEMP_SUFFIX = '.svdq-tmp';

/** Eight hex digits identifying this machine in temporary-file names. */
export const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

const OWNER = /\.(\d+)@([0-9a-f]{8})\.[0-9a-f]{12}\.svdq-tmp$/;

/** A fresh temporary-file path next to `target`. */
export function tempPathFor(target: string): string {
  // The name is cut so the temporary name stays within common 255-byte file-name limits.
  const name = `${ATOMIC_TEMP_PREFIX}${basename(target).slice(0, 100)}.${process.pid}@${HOST_TAG}.${randomBytes(6).toString('hex')}${ATOMIC_TEMP_SUFFIX}`;
  return join(dirname(target), name);
}

/** The writer of a temporary file (from its name), or undefined for any other file name. */
export function tempOwner(name: string): { pid: number; host: string } | undefined {
  if (!name.startsWith(ATOMIC_TEMP_PREFIX)) return undefined;
  const match = OWNER.exec(name);
  return match === null ? undefined : { pid: Number(match[1]), host: match[2] };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, but not ours to signal
  }
}

/**
 * Removes the temporary files in `directory` whose writer was a process of this machine that no
 * longer runs (killed mid-write, e.g. by SIGKILL or a power cut). Returns the names removed. Best
 * effort: a folder that cannot be listed, or a file already gone, is not an error.
 */
export async function sweepStaleTemps(directory: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = tempOwner(name);
    if (owner === undefined || owner.host !== HOST_TAG || owner.pid === process.pid || isAlive(owner.pid)) continue;
    try {
      await unlink(join(directory, name));
      removed.push(name);
    } catch {
      // Another writer swept it first, or it cannot be removed: nothing to do.
    }
  }
  return removed;
}

const pending = new Set<string>();
let removeExitHandler: (() => void) | undefined;

function removePendingSync(): void {
  for (const path of pending) {
    try {
      unlinkSync(path);
    } catch {
      // Already renamed into place or removed.
    }
  }
  pending.clear();
  removeExitHandler = undefined;
}

/** Records a temporary file being written; it is removed if the process is interrupted. */
export function trackTemp(path: string): void {
  // signal-exit calls the handler on exit and on fatal signals; after it, the signal ends the process
  // unless the application listens to it (it knows of its own other instances, e.g. a test runner's).
  if (pending.size === 0) removeExitHandler = onExit(removePendingSync);
  pending.add(path);
}

/** The temporary file was renamed into place or removed: stop tracking it. */
export function untrackTemp(path: string): void {
  if (!pending.delete(path)) return;
  if (pending.size === 0) {
    removeExitHandler?.();
    removeExitHandler = undefined;
  }
}

/** Temporary files currently tracked (for tests). */
export function trackedTemps(): string[] {
  return [...pending];
}
