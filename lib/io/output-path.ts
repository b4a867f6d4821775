/**
 * Checks of output paths, made before any long work starts, so a bad output fails in milliseconds
 * instead of after minutes of quantizing or measuring: the folder exists (or can be created), is a
 * folder on an ordinary file system and is writable, and the target is absent or a regular file.
 *
 * Kernel pseudo file systems (/proc, /sys, cgroup, debugfs, ...) are refused by their statfs type:
 * writes there fail in odd ways, access() says "writable" to root, and Node's recursive mkdir never
 * returns on them (it retries ENOENT forever), which is how `demo --export /proc/foo` hung.
 */

import { access, constants, lstat, mkdir, realpath, stat, statfs } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { IoError } from '../errors.js';

/** statfs f_type of Linux kernel pseudo file systems (linux/magic.h), where user files never belong. */
const PSEUDO_FILE_SYSTEMS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0x1cd1, 'devpts'],
  [0x6165676c, 'pstore'],
  [0xcafe4a11, 'bpf'],
  [0x62656570, 'configfs'],
  [0xde5e81e4, 'efivarfs'],
  [0x65735546, 'fusectl'],
  [0x42494e4d, 'binfmt_misc'],
  [0x19800202, 'mqueue'],
  [0xf97cff8c, 'selinuxfs'],
]);

/** What a path is, in words, for error messages ("a directory", "a character device", ...). */
function kindOf(stats: { isFile(): boolean; isDirectory(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isFIFO(): boolean; isSocket(): boolean; isSymbolicLink(): boolean }): string {
  if (stats.isFile()) return 'a regular file';
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a named pipe';
  if (stats.isSocket()) return 'a socket';
  if (stats.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

function problem(text: string, code = 'EINVAL'): Error {
  return Object.assign(new Error(text), { code });
}

/** The pseudo file system `dir` lives on, or undefined for an ordinary one (always undefined off Linux). */
async function pseudoFileSystem(dir: string): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  try {
    return PSEUDO_FILE_SYSTEMS.get(Number((await statfs(dir)).type));
  } catch {
    return undefined; // statfs unsupported: the later checks and the write itself still apply
  }
}

/**
 * Checks that `dir` is an existing, writable directory on an ordinary file system; throws IoError
 * naming `file` (the output being prepared) and describing the problem with `dir`.
 */
async function checkDirectory(dir: string, file: string, action: string): Promise<void> {
  let stats;
  try {
    stats = await stat(dir);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new IoError(file, action, code === 'ENOENT' ? problem(`directory '${dir}' does not exist`, code) : cause);
  }
  if (!stats.isDirectory()) throw new IoError(file, action, problem(`'${dir}' is ${kindOf(stats)}, not a directory`, 'ENOTDIR'));
  const pseudo = await pseudoFileSystem(dir);
  if (pseudo !== undefined) {
    throw new IoError(file, action, problem(`'${dir}' is on the kernel's ${pseudo} pseudo file system: expected a directory on an ordinary file system`));
  }
  try {
    await access(dir, constants.W_OK);
  } catch (cause) {
    throw new IoError(file, action, problem(`directory '${dir}' is not writable (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`, (cause as NodeJS.ErrnoException).code));
  }
}

/**
 * The regular file that writing `file` should replace: `file` itself, or the file a symbolic link
 * points to (so the link survives the replacement). Throws IoError when `file` exists and is not a
 * regular file (a directory, a device such as /dev/full, a pipe, a dangling link), or when its
 * directory is missing, not writable or on a pseudo file system. Nothing is created.
 */
export async function resolveOutputFile(file: string, action = 'write'): Promise<string> {
  let target = resolve(file);
  let link;
  try {
    link = await lstat(target);
  } catch (cause) {
    // ENOTDIR: a parent is a file; checkDirectory below names it.
    const code = (cause as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw new IoError(file, action, cause);
  }
  if (link?.isSymbolicLink() === true) {
    try {
      target = await realpath(target);
    } catch (cause) {
      throw new IoError(file, action, problem(`it is a symbolic link to a missing file (${(cause as NodeJS.ErrnoException).code ?? String(cause)})`));
    }
    link = await stat(target).catch((cause: unknown) => {
      throw new IoError(file, action, cause);
    });
  }
  if (link !== undefined && !link.isFile()) {
    throw new IoError(file, action, problem(`it is ${kindOf(link)}: expected a regular file or a new file name`, link.isDirectory() ? 'EISDIR' : 'EINVAL'));
  }
  await checkDirectory(dirname(target), file, action);
  return target;
}

/** resolveOutputFile for callers that only need the check (the CLI, before its work starts). */
export async function checkOutputFile(file: string): Promise<void> {
  await resolveOutputFile(file);
}

/**
 * Checks that `dir` can hold output files: an existing writable directory, or (create: true) a path
 * whose nearest existing ancestor is a writable directory on an ordinary file system, so that
 * makeDirectory(dir) will succeed. Throws IoError naming `dir`.
 */
export async function checkOutputDirectory(dir: string, options: { create: boolean }): Promise<void> {
  const full = resolve(dir);
  let existing = full;
  for (;;) {
    try {
      const stats = await stat(existing);
      if (!stats.isDirectory()) throw new IoError(dir, 'create the directory', problem(`'${existing}' is ${kindOf(stats)}, not a directory`, 'ENOTDIR'));
      break;
    } catch (cause) {
      if (cause instanceof IoError) throw cause;
      // ENOENT: missing; ENOTDIR: a file on the way, which the walk up reaches and names.
      const code = (cause as NodeJS.ErrnoException).code;
      if ((code !== 'ENOENT' && code !== 'ENOTDIR') || !options.create) throw new IoError(dir, 'use the directory', cause);
      const parent = dirname(existing);
      if (parent === existing) throw new IoError(dir, 'create the directory', cause);
      existing = parent;
    }
  }
  await checkDirectory(existing, dir, existing === full ? 'write into the directory' : 'create the directory');
}

/**
 * mkdir -p, one level at a time: Node's own recursive mkdir loops forever on some pseudo file
 * systems; this one reports the first level that cannot be created as an IoError naming `dir`.
 */
export async function makeDirectory(dir: string): Promise<void> {
  await checkOutputDirectory(dir, { create: true });
  const full = resolve(dir);
  const missing: string[] = [];
  for (let p = full; ; p = dirname(p)) {
    try {
      await stat(p);
      break;
    } catch {
      missing.push(p);
      if (dirname(p) === p) break;
    }
  }
  for (const p of missing.reverse()) {
    try {
      await mkdir(p);
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code !== 'EEXIST') throw new IoError(dir, 'create the directory', cause);
    }
  }
}
