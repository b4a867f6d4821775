/**
 * Reading and writing `scheduler_config.json` as diffusers does: a scheduler folder (or a pipeline
 * folder holding `scheduler/`), or the JSON file itself; saved with sorted keys, two-space indent,
 * Python's float notation and a trailing newline, written atomically.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError, IoError } from '../../errors.js';
import { writeFileAtomic } from '../../io/atomic-write.js';
import { stringifyPythonJson } from '../../io/python-json.js';
import { readConfigFile } from '../../io/config-file.js';
import { DIFFUSERS_VERSION, floatKeysOf } from './config.js';
import { SCHEDULER_CLASSES, isSchedulerClassName } from './registry.js';
import type { Scheduler } from './types.js';

export const SCHEDULER_CONFIG_NAME = 'scheduler_config.json';

/**
 * Reads a scheduler config: `path` is a `scheduler_config.json` file, a folder holding one, or a
 * diffusers pipeline folder whose `scheduler/` holds one. Returns the parsed object (a fresh,
 * mutable copy; pass it to schedulerFromConfig). IoError when nothing can be read,
 * FileFormatError when the file is not a JSON object.
 */
export async function loadSchedulerConfig(path: string): Promise<Record<string, unknown>> {
  if (typeof path !== 'string' || path.length === 0) throw new ArgumentError('path', 'a non-empty path string', path);
  return readConfigFile(await findConfigFile(path), 'a scheduler config object');
}

async function findConfigFile(path: string): Promise<string> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
  } catch (cause) {
    throw new IoError(path, 'read', cause);
  }
  if (!isDirectory) return path;
  const direct = join(path, SCHEDULER_CONFIG_NAME);
  const nested = join(path, 'scheduler', SCHEDULER_CONFIG_NAME);
  for (const candidate of [direct, nested]) {
    try {
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // try the next place
    }
  }
  throw new IoError(direct, 'read', new Error(`no ${SCHEDULER_CONFIG_NAME} in '${path}' or its scheduler/ folder`));
}

/**
 * Writes `<dir>/scheduler_config.json` for `scheduler` (creating `dir`), as diffusers'
 * `save_config` formats it, atomically. Returns the file's path.
 */
export async function saveSchedulerConfig(scheduler: Scheduler, dir: string): Promise<string> {
  const config = (scheduler as { config?: unknown } | null)?.config;
  if (config === null || typeof config !== 'object' || !isSchedulerClassName((config as Record<string, unknown>)._class_name)) {
    throw new ArgumentError('scheduler', `a scheduler (${Object.keys(SCHEDULER_CLASSES).join(', ')})`, scheduler);
  }
  if (typeof dir !== 'string' || dir.length === 0) throw new ArgumentError('dir', 'a non-empty directory path string', dir);
  const record = config as Record<string, unknown>;
  const spec = SCHEDULER_CLASSES[record._class_name as keyof typeof SCHEDULER_CLASSES].configSpec;
  const text = stringifyPythonJson({ ...record, _diffusers_version: DIFFUSERS_VERSION }, { floatKeys: floatKeysOf(spec) }) + '\n';
  try {
    await mkdir(dir, { recursive: true });
  } catch (cause) {
    throw new IoError(dir, 'create the directory', cause);
  }
  const file = join(dir, SCHEDULER_CONFIG_NAME);
  const bytes = Buffer.from(text, 'utf8');
  await writeFileAtomic(file, async (handle) => {
    for (let done = 0; done < bytes.length;) {
      const { bytesWritten } = await handle.write(bytes, done, bytes.length - done, done);
      if (bytesWritten <= 0) throw new Error(`write made no progress at byte ${done}`);
      done += bytesWritten;
    }
  });
  return file;
}
