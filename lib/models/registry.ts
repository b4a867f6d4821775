/**
 * The architectures the loader can build, keyed by diffusers' `_class_name`. Open: a model family
 * registers itself here (registerArchitecture) and the loader needs no change.
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import type { DiffusersConfig } from './config.js';

export interface Architecture {
  /** diffusers' class name, as in config.json's `_class_name`. */
  className: string;
  /** Builds the model (random-free: parameters zero until loaded) from its config. */
  build(config: DiffusersConfig): Module;
  /** One line for docs and errors. */
  description: string;
}

const architectures = new Map<string, Architecture>();

/** Adds an architecture (replacing one of the same class name). */
export function registerArchitecture(arch: Architecture): void {
  if (arch === null || typeof arch !== 'object' || typeof arch.className !== 'string' || typeof arch.build !== 'function') {
    throw new ArgumentError('arch', 'an object { className, build, description }', arch);
  }
  architectures.set(arch.className, arch);
}

/** The registered class names. */
export function architectureNames(): string[] {
  return [...architectures.keys()].sort();
}

/**
 * The class a config builds: its `_class_name`, with diffusers' legacy mapping of the generic
 * `Transformer2DModel` (patch_size set, norm_type 'ada_norm_zero' -> DiT, 'ada_norm_single' -> PixArt).
 */
export function resolveClassName(config: DiffusersConfig): string {
  const name = config._class_name;
  if (typeof name !== 'string' || name.length === 0) throw new ArgumentError('config._class_name', 'the diffusers class name of the model', name);
  if (name === 'Transformer2DModel' && config.patch_size != null) {
    if (config.norm_type === 'ada_norm_zero') return 'DiTTransformer2DModel';
    if (config.norm_type === 'ada_norm_single') return 'PixArtTransformer2DModel';
  }
  return name;
}

/** Builds the model a config describes; ArgumentError naming the class when it is not supported. */
export function buildModel(config: DiffusersConfig): Module {
  const name = resolveClassName(config);
  const arch = architectures.get(name);
  if (arch === undefined) {
    throw new ArgumentError('config._class_name', `a supported architecture (${architectureNames().join(', ')})`, name);
  }
  return arch.build({ ...config, _class_name: name });
}
