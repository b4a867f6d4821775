/**
 * Reading a diffusers `config.json` (the `@register_to_config` arguments of a model class): typed
 * getters with diffusers' defaults, so that every architecture validates its config the same way.
 * A wrong type or value is an ArgumentError naming `config.<key>`; keys an architecture does not
 * know are kept (diffusers writes private ones such as `_diffusers_version`) and ignored.
 */
import { ArgumentError } from '../errors.js';

/** A diffusers config: JSON object keyed by the constructor's argument names. */
export type DiffusersConfig = Readonly<Record<string, unknown>>;

/** The config of a built model, with the class name it was built as (saved in checkpoints). */
export type ModelConfig = DiffusersConfig & { readonly _class_name: string };

export class ConfigReader {
  readonly #config: DiffusersConfig;
  readonly #resolved: Record<string, unknown> = {};

  constructor(config: unknown, readonly className: string) {
    if (config === null || typeof config !== 'object' || Array.isArray(config)) throw new ArgumentError('config', `a config object for ${className}`, config);
    this.#config = config as DiffusersConfig;
  }

  #get(key: string, fallback: unknown): unknown {
    const v = Object.prototype.hasOwnProperty.call(this.#config, key) ? this.#config[key] : undefined;
    const value = v === undefined ? fallback : v;
    this.#resolved[key] = value;
    return value;
  }

  #fail(key: string, expected: string, got: unknown): never {
    throw new ArgumentError(`config.${key}`, `${expected} (${this.className})`, got);
  }

  /** An integer in [min, max]. */
  int(key: string, fallback: number | undefined, min = 0, max = 2 ** 30): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.#fail(key, `an integer in [${min}, ${max}]`, v);
    return v;
  }

  /** An integer in [min, max], or null. */
  optionalInt(key: string, fallback: number | null, min = 0, max = 2 ** 30): number | null {
    const v = this.#get(key, fallback);
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.#fail(key, `null or an integer in [${min}, ${max}]`, v);
    return v;
  }

  /** A finite number. */
  number(key: string, fallback: number | undefined): number {
    const v = this.#get(key, fallback);
    if (typeof v !== 'number' || !Number.isFinite(v)) this.#fail(key, 'a finite number', v);
    return v;
  }

  /** A finite number or null. */
  optionalNumber(key: string, fallback: number | null): number | null {
    const v = this.#get(key, fallback);
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.#fail(key, 'null or a finite number', v);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.#get(key, fallback);
    if (typeof v !== 'boolean') this.#fail(key, 'true or false', v);
    return v;
  }

  /** One of `allowed` (the values this implementation supports). */
  oneOf<T extends string>(key: string, fallback: T | null, allowed: readonly T[]): T {
    const v = this.#get(key, fallback);
    if (!allowed.includes(v as T)) this.#fail(key, `one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    return v as T;
  }

  /** One of `allowed`, or null. */
  optionalOneOf<T extends string>(key: string, fallback: T | null, allowed: readonly T[]): T | null {
    const v = this.#get(key, fallback);
    if (v === null) return null;
    if (!allowed.includes(v as T)) this.#fail(key, `null or one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    return v as T;
  }

  /** An array of integers in [min, max] (of `length` when given). */
  ints(key: string, fallback: number[] | undefined, min = 0, max = 2 ** 30, length?: number): number[] {
    const v = this.#get(key, fallback);
    if (!Array.isArray(v) || (length !== undefined && v.length !== length) || !v.every((x) => Number.isInteger(x) && x >= min && x <= max)) {
      this.#fail(key, `an array of ${length ?? 'any number of'} integers in [${min}, ${max}]`, v);
    }
    return [...(v as number[])];
  }

  /** An array of strings (of `length` when given), each one of `allowed`. */
  strings<T extends string>(key: string, fallback: T[] | undefined, allowed: readonly T[], length?: number): T[] {
    const v = this.#get(key, fallback);
    if (!Array.isArray(v) || (length !== undefined && v.length !== length) || !v.every((x) => allowed.includes(x as T))) {
      this.#fail(key, `an array of ${length ?? 'any number of'} values from ${allowed.map((a) => JSON.stringify(a)).join(', ')}`, v);
    }
    return [...(v as T[])];
  }

  /** The config as given, with the defaults that were read filled in, and the class name. */
  resolved(): ModelConfig {
    return Object.freeze({ ...this.#config, ...this.#resolved, _class_name: this.className });
  }
}
