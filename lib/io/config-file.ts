/**
 * Reading diffusers' JSON config files (config.json, scheduler_config.json, model_index.json,
 * *.safetensors.index.json): Python's JSON dialect (diffusers writes -Infinity and NaN), a size
 * limit, and typed errors (IoError when the file cannot be read, FileFormatError when it is not a
 * JSON object).
 */
import { readFile, stat } from 'node:fs/promises';
import { FileFormatError, IoError } from '../errors.js';
import { parsePythonJson } from './python-json.js';

/** Config files are a few KB (trained_betas, weight maps of large models included); anything far larger is not one. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** The JSON object in `file` (a fresh, mutable copy); `what` names the expected content in errors. */
export async function readConfigFile(file: string, what: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    const info = await stat(file);
    if (!info.isFile()) throw new Error('not a regular file');
    if (info.size > MAX_CONFIG_BYTES) throw new FileFormatError(file, `${info.size} bytes: expected ${what} of at most ${MAX_CONFIG_BYTES} bytes`);
    text = await readFile(file, 'utf8');
  } catch (cause) {
    if (cause instanceof FileFormatError) throw cause;
    throw new IoError(file, 'read', cause);
  }
  let value: unknown;
  try {
    value = parsePythonJson(text);
  } catch (cause) {
    throw new FileFormatError(file, `not valid JSON (${cause instanceof Error ? cause.message : String(cause)}): expected ${what}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FileFormatError(file, `the top-level value is not a JSON object: expected ${what}`);
  }
  return value as Record<string, unknown>;
}
