/**
 * Scheduler configs: diffusers' `scheduler_config.json` keys, verbatim. Each scheduler declares its
 * keys with their v0.30.3 defaults and allowed values; `resolveSchedulerConfig` validates a config
 * against that declaration, fills in the defaults, and keeps every other key (diffusers keeps
 * unknown keys too, and writes them back when it saves).
 */
import { ArgumentError } from '../../errors.js';

/** A scheduler's config: diffusers keys (snake_case) and values, frozen. */
export type SchedulerConfig = Readonly<Record<string, unknown>>;

/** The diffusers release whose scheduler semantics these classes reproduce; written into saved configs. */
export const DIFFUSERS_VERSION = '0.30.3';

/** What a config key may hold. `nullable` also allows null. */
export type KeyType =
  | { readonly kind: 'int'; readonly min: number; readonly max?: number; readonly nullable?: boolean }
  | {
      readonly kind: 'float';
      /** Lower bound; `exclusive` makes it strict. Non-finite values only where `allowNegativeInfinity`. */
      readonly min?: number;
      readonly max?: number;
      readonly exclusive?: boolean;
      readonly allowNegativeInfinity?: boolean;
      readonly nullable?: boolean;
    }
  | { readonly kind: 'bool'; readonly nullable?: boolean }
  | { readonly kind: 'enum'; readonly values: readonly string[]; readonly nullable?: boolean }
  | { readonly kind: 'string'; readonly nullable?: boolean }
  | { readonly kind: 'floatArray'; readonly nullable?: boolean };

export interface KeySpec {
  readonly default: unknown;
  readonly type: KeyType;
}

export type ConfigSpec = Readonly<Record<string, KeySpec>>;

/** The keys of a spec whose values are Python floats (written with a decimal point). */
export function floatKeysOf(spec: ConfigSpec): Set<string> {
  return new Set(Object.keys(spec).filter((k) => spec[k].type.kind === 'float' || spec[k].type.kind === 'floatArray'));
}

// Key groups the discrete (beta-schedule) schedulers share.
export const BETA_KEYS: ConfigSpec = {
  num_train_timesteps: { default: 1000, type: { kind: 'int', min: 1 } },
  beta_start: { default: 0.0001, type: { kind: 'float', min: 0, max: 1 } },
  beta_end: { default: 0.02, type: { kind: 'float', min: 0, max: 1 } },
  beta_schedule: { default: 'linear', type: { kind: 'enum', values: ['linear', 'scaled_linear', 'squaredcos_cap_v2'] } },
  trained_betas: { default: null, type: { kind: 'floatArray', nullable: true } },
  rescale_betas_zero_snr: { default: false, type: { kind: 'bool' } },
};

export const SPACING_KEYS: ConfigSpec = {
  timestep_spacing: { default: 'leading', type: { kind: 'enum', values: ['linspace', 'leading', 'trailing'] } },
  steps_offset: { default: 0, type: { kind: 'int', min: 0 } },
};

export const PREDICTION_TYPES = ['epsilon', 'v_prediction', 'sample'] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

export const THRESHOLDING_KEYS: ConfigSpec = {
  thresholding: { default: false, type: { kind: 'bool' } },
  dynamic_thresholding_ratio: { default: 0.995, type: { kind: 'float', min: 0, max: 1 } },
  sample_max_value: { default: 1.0, type: { kind: 'float', min: 0, exclusive: true } },
};

/**
 * Validates `input` against `spec` and returns the frozen config: `_class_name` set to
 * `className`, every spec key (given or default), and every other key kept as given. Keys listed in
 * `_use_default_values` take their defaults, as in diffusers; that list itself is not kept.
 * Errors are ArgumentError naming `config.<key>`.
 */
export function resolveSchedulerConfig(className: string, spec: ConfigSpec, input: unknown): SchedulerConfig {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new ArgumentError('config', 'a scheduler config object (diffusers scheduler_config.json keys)', input);
  }
  const given = input as Record<string, unknown>;
  const useDefaults = given._use_default_values;
  if (useDefaults !== undefined && !(Array.isArray(useDefaults) && useDefaults.every((k) => typeof k === 'string'))) {
    throw new ArgumentError('config._use_default_values', 'a list of key names', useDefaults);
  }
  const defaulted = new Set<string>(useDefaults as string[] | undefined);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(given)) {
    // An undefined value counts as absent, as for an optional property in TypeScript.
    if (key === '_use_default_values' || defaulted.has(key) || value === undefined) continue;
    if (Object.prototype.hasOwnProperty.call(spec, key)) checkValue(`config.${key}`, spec[key].type, value);
    else checkJsonValue(`config.${key}`, value);
    // defineProperty: a key named "__proto__" stays a plain key instead of replacing the prototype.
    Object.defineProperty(out, key, { value: copyJsonValue(value), enumerable: true, writable: true, configurable: true });
  }
  for (const [key, keySpec] of Object.entries(spec)) {
    if (!Object.prototype.hasOwnProperty.call(out, key)) out[key] = copyJsonValue(keySpec.default);
  }
  out._class_name = className;
  return deepFreeze(out);
}

function checkValue(name: string, type: KeyType, value: unknown): void {
  if (value === null && type.nullable) return;
  switch (type.kind) {
    case 'int': {
      const range = type.max === undefined ? `>= ${type.min}` : `in ${type.min}..${type.max}`;
      if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < type.min || (type.max !== undefined && value > type.max)) {
        throw new ArgumentError(name, `an integer ${range}${type.nullable ? ' or null' : ''}`, value);
      }
      return;
    }
    case 'float': {
      const ok =
        typeof value === 'number' &&
        ((Number.isFinite(value) && inRange(value, type)) || (value === -Infinity && type.allowNegativeInfinity === true));
      if (!ok) throw new ArgumentError(name, `${describeFloat(type)}${type.nullable ? ' or null' : ''}`, value);
      return;
    }
    case 'bool':
      if (typeof value !== 'boolean') throw new ArgumentError(name, `true or false${type.nullable ? ' or null' : ''}`, value);
      return;
    case 'enum':
      if (typeof value !== 'string' || !type.values.includes(value)) {
        throw new ArgumentError(name, `one of ${type.values.map((v) => `'${v}'`).join(', ')}${type.nullable ? ' or null' : ''}`, value);
      }
      return;
    case 'string':
      if (typeof value !== 'string') throw new ArgumentError(name, `a string${type.nullable ? ' or null' : ''}`, value);
      return;
    case 'floatArray':
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        throw new ArgumentError(name, `a list of finite numbers${type.nullable ? ' or null' : ''}`, value);
      }
      return;
  }
}

function inRange(value: number, type: { min?: number; max?: number; exclusive?: boolean }): boolean {
  if (type.min !== undefined && (type.exclusive ? value <= type.min : value < type.min)) return false;
  return type.max === undefined || value <= type.max;
}

function describeFloat(type: { min?: number; max?: number; exclusive?: boolean; allowNegativeInfinity?: boolean }): string {
  const parts: string[] = [];
  if (type.min !== undefined) parts.push(`${type.exclusive ? '>' : '>='} ${type.min}`);
  if (type.max !== undefined) parts.push(`<= ${type.max}`);
  const base = type.allowNegativeInfinity ? 'a number or -Infinity' : 'a finite number';
  return parts.length === 0 ? base : `${base} ${parts.join(' and ')}`;
}

/** Unknown keys are kept, so they must be values a JSON file can hold. */
function checkJsonValue(name: string, value: unknown): void {
  if (value === null || typeof value === 'boolean' || typeof value === 'number' || typeof value === 'string') return;
  if (Array.isArray(value)) {
    value.forEach((v, i) => checkJsonValue(`${name}[${i}]`, v));
    return;
  }
  if (typeof value === 'object' && (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null)) {
    for (const [k, v] of Object.entries(value as object)) checkJsonValue(`${name}.${k}`, v);
    return;
  }
  throw new ArgumentError(name, 'a JSON value (null, boolean, number, string, list or plain object)', value);
}

function copyJsonValue(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(copyJsonValue);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copyJsonValue(v)]));
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

