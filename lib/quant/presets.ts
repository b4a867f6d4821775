/**
 * Quantization presets per architecture: which layers stay in high precision, and why. A model
 * with a diffusers config (`model.config._class_name`) gets its architecture's preset by default
 * (`preset: 'auto'`); the report names the preset entry that skipped each layer.
 *
 * The tables follow AMD Quark's validated exclude lists for the diffusers families and the SVDQuant
 * paper's practice: embedders, the adaLN modulation linears (they see one row per sample, so they
 * cost nothing at run time and their error would scale every token) and the output projection stay
 * in high precision. quant knows nothing of the model classes: presets are keyed by class name.
 */
import { ArgumentError } from '../errors.js';
import type { Module } from '../graph/module.js';
import { firstMatch } from './glob.js';

export interface PresetRule {
  /** Glob on dotted layer names (lib/quant/glob.ts: `*` within a segment, `**` across). */
  pattern: string;
  reason: string;
}

export interface QuantPreset {
  /** The diffusers `_class_name`s it applies to. */
  classes: readonly string[];
  description: string;
  exclude: readonly PresetRule[];
}

const ADALN = 'adaLN modulation: one row per sample (cheap in high precision; its error would scale every token)';
const EMBED = 'embedder: one row per sample or a one-off input projection (cheap in high precision)';
const OUTPUT = 'output projection to the latent/pixel channels (sensitive; kept by Quark and the paper)';

export const PRESETS: Readonly<Record<string, QuantPreset>> = Object.freeze({
  dit: {
    classes: ['DiTTransformer2DModel'],
    description: 'class-conditional DiT (adaLN-Zero): attention and feed-forward linears quantized',
    exclude: [
      { pattern: '**.norm1.emb.**', reason: `timestep/label ${EMBED}` },
      { pattern: '**.norm1.linear', reason: ADALN },
      { pattern: 'proj_out_1', reason: ADALN },
      { pattern: 'proj_out_2', reason: OUTPUT },
    ],
  },
});

/** The config's class name of a model built from a diffusers config (models of lib/models), else undefined. */
export function modelClassName(model: Module): string | undefined {
  const c = (model as { config?: unknown }).config;
  const name = c !== null && typeof c === 'object' ? (c as Record<string, unknown>)._class_name : undefined;
  return typeof name === 'string' ? name : undefined;
}

/** The preset for `model` under the config's `preset` ('auto', 'none' or a preset name), with its name. */
export function resolvePreset(preset: string, model: Module): { name: string; preset: QuantPreset } | undefined {
  if (preset === 'none') return undefined;
  if (preset === 'auto') {
    const cls = modelClassName(model);
    if (cls === undefined) return undefined;
    const hit = Object.entries(PRESETS).find(([, p]) => p.classes.includes(cls));
    return hit === undefined ? undefined : { name: hit[0], preset: hit[1] };
  }
  const p = PRESETS[preset];
  if (p === undefined) throw new ArgumentError('config.preset', `'auto', 'none' or one of ${Object.keys(PRESETS).map((k) => `'${k}'`).join(', ')}`, preset);
  return { name: preset, preset: p };
}

/** The preset rule that excludes `name`, if any. */
export function presetExclusion(preset: QuantPreset, name: string): PresetRule | undefined {
  const pattern = firstMatch(preset.exclude.map((r) => r.pattern), name);
  return pattern === undefined ? undefined : preset.exclude.find((r) => r.pattern === pattern);
}
