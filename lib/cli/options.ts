/** Parsing of option values shared by the commands; bad values are usage errors (exit code 2). */
import { UsageError } from './command.js';

/** An integer option in [min, max], or `fallback` when absent. */
export function intOption(command: string, name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const text = String(value).trim();
  const n = /^[+-]?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${command}: --${name} expects an integer in [${min}, ${max}], got ${JSON.stringify(String(value))}`);
  }
  return n;
}

/** A number option in [min, max], or `fallback` when absent. */
export function numberOption(command: string, name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const text = String(value).trim();
  const n = text === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`${command}: --${name} expects a number in [${min}, ${max}], got ${JSON.stringify(String(value))}`);
  }
  return n;
}

/** A comma-separated list of names from `allowed` (no duplicates), or `fallback` when absent. */
export function listOption<T extends string>(command: string, name: string, value: unknown, allowed: readonly T[], fallback: readonly T[]): T[] {
  if (value === undefined) return [...fallback];
  const items = String(value).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${command}: --${name} expects a comma-separated list of ${allowed.join(', ')}`);
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new UsageError(`${command}: --${name}: unknown value '${item}' (expected ${allowed.join(', ')})`);
  }
  if (new Set(items).size !== items.length) throw new UsageError(`${command}: --${name} lists a value twice`);
  return items as T[];
}

/** A comma-separated list of integers in [min, max], or `fallback` when absent. */
export function intListOption(command: string, name: string, value: unknown, fallback: readonly number[], min: number, max: number): number[] {
  if (value === undefined) return [...fallback];
  const items = String(value).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${command}: --${name} expects a comma-separated list of integers`);
  return items.map((item) => intOption(command, name, item, 0, min, max));
}
