/**
 * The quantization schemes of DESIGN.md §3 and the element formats they are built from.
 */
export type ElementFormat = 'int4' | 'mxfp4' | 'nvfp4' | 'int8';
export type SchemeName = 'w4a4' | 'w4a16' | 'mxfp4' | 'nvfp4' | 'w8a8';
export type MxScaleRule = 'floor' | 'even' | 'ceil';

export interface FormatSpec {
  readonly format: ElementFormat;
  /** Elements per scale group along K; 0 means one group per row (int8). */
  readonly group: number;
  /** dtype of the packed codes tensor. */
  readonly codeDType: 'int4' | 'fp4_e2m1' | 'i8';
  /** dtype of the group scales tensor. */
  readonly scaleDType: 'f32' | 'e8m0' | 'e4m3';
  readonly description: string;
}

export const FORMATS: Readonly<Record<ElementFormat, FormatSpec>> = Object.freeze({
  int4: { format: 'int4', group: 64, codeDType: 'int4', scaleDType: 'f32', description: 'INT4 signed, group 64, fp32 scale amax/7' },
  mxfp4: { format: 'mxfp4', group: 32, codeDType: 'fp4_e2m1', scaleDType: 'e8m0', description: 'FP4 E2M1, group 32, E8M0 power-of-two scale' },
  nvfp4: { format: 'nvfp4', group: 16, codeDType: 'fp4_e2m1', scaleDType: 'e4m3', description: 'FP4 E2M1, group 16, E4M3 block scale x fp32 tensor scale' },
  int8: { format: 'int8', group: 0, codeDType: 'i8', scaleDType: 'f32', description: 'INT8 per row, fp32 scale amax/127' },
});

export interface SchemeSpec {
  readonly name: SchemeName;
  readonly weights: ElementFormat;
  /** null: activations stay in floating point (w4a16). */
  readonly activations: ElementFormat | null;
}

export const SCHEMES: Readonly<Record<SchemeName, SchemeSpec>> = Object.freeze({
  w4a4: { name: 'w4a4', weights: 'int4', activations: 'int4' },
  w4a16: { name: 'w4a16', weights: 'int4', activations: null },
  mxfp4: { name: 'mxfp4', weights: 'mxfp4', activations: 'mxfp4' },
  nvfp4: { name: 'nvfp4', weights: 'nvfp4', activations: 'nvfp4' },
  w8a8: { name: 'w8a8', weights: 'int8', activations: 'int8' },
});

export const ELEMENT_FORMATS = Object.keys(FORMATS) as ElementFormat[];
export const SCHEME_NAMES = Object.keys(SCHEMES) as SchemeName[];
export const MX_SCALE_RULES: readonly MxScaleRule[] = ['floor', 'even', 'ceil'];

/** K padded up to a whole number of groups (int8 has one group per row: no padding). */
export function paddedK(format: ElementFormat, k: number): number {
  const g = FORMATS[format].group;
  return g === 0 ? k : Math.ceil(k / g) * g;
}

/** Scale groups per row. */
export function groupsPerRow(format: ElementFormat, k: number): number {
  const g = FORMATS[format].group;
  return g === 0 ? 1 : Math.ceil(k / g);
}
