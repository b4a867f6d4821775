/**
 * The quantizer's options on the command line (shared by `quantize` and `calibrate`), mapped onto
 * SVDQuantConfig (lib/quant/config.ts), which validates them again.
 */
import type { ParseArgsConfig } from 'node:util';
import { MX_SCALE_RULES, SCHEME_NAMES, type MxScaleRule, type SchemeName } from '../formats/schemes.js';
import type { SVDQuantConfigInput, SvdMethod } from '../quant/config.js';
import { UsageError } from './command.js';
import { intOption, listOption, numberOption } from './options.js';

export const QUANT_OPTIONS: NonNullable<ParseArgsConfig['options']> = {
  scheme: { type: 'string' },
  rank: { type: 'string' },
  alpha: { type: 'string' },
  beta: { type: 'string' },
  'no-smooth': { type: 'boolean' },
  'search-alpha': { type: 'boolean' },
  'no-search-alpha': { type: 'boolean' },
  'alpha-candidates': { type: 'string' },
  'search-beta': { type: 'boolean' },
  'beta-candidates': { type: 'string' },
  'max-samples': { type: 'string' },
  holdout: { type: 'string' },
  exclude: { type: 'string', multiple: true },
  'min-dim': { type: 'string' },
  refine: { type: 'string' },
  gptq: { type: 'boolean' },
  rtn: { type: 'boolean' },
  'gptq-block': { type: 'string' },
  'gptq-damp': { type: 'string' },
  'act-order': { type: 'boolean' },
  'mx-rule': { type: 'string' },
  svd: { type: 'string' },
  seed: { type: 'string' },
  threads: { type: 'string' },
};

export const QUANT_OPTIONS_HELP = `Quantizer options:
  --scheme S              w4a4 (default), mxfp4, nvfp4, w4a16, w8a8
  --rank N                rank of the low-rank branch (default 32; 0: none)
  --alpha A               fixed smoothing exponent alpha in [0, 1] (turns the alpha search off)
  --beta B                weight exponent beta (default 1 - alpha; turns the alpha search off)
  --no-smooth             no smoothing (lambda = 1)
  --search-alpha          search alpha per layer on the held-out output error (the default; with
                          --alpha/--beta: search anyway)
  --no-search-alpha       fixed alpha 0.5 instead of the search (faster, lower quality)
  --alpha-candidates L    candidates of the search (default 0.1,0.2,...,1.0)
  --search-beta           search beta too (--beta-candidates L, default 0,0.25,0.5,0.75,1)
  --max-samples N         calibration tokens kept per layer for scoring and the error report (default 1024)
  --holdout F             fraction of each layer's tokens held out: statistics from the rest, every choice
                          (alpha, beta, GPTQ damping, GPTQ or RTN) scored on these (default 0.25; 0: none)
  --exclude GLOB          skip layers whose name matches (repeatable; * within a name segment, ** across)
  --min-dim N             skip layers with min(N, K) < N (default 0)
  --refine N              low-rank refinement iterations (default 0)
  --gptq                  GPTQ for the residual (the default; guarded: a layer falls back to
                          round-to-nearest when GPTQ is worse on its held-out tokens)
  --rtn                   round-to-nearest for the residual instead of GPTQ (faster, lower quality)
  --gptq-block N          GPTQ block size (default 128)   --gptq-damp D   damping (default 0.01)
  --act-order             GPTQ in descending Hessian diagonal order
  --mx-rule R             MXFP4 scale rule: floor, even (default), ceil
  --svd M                 auto (default), exact, randomized
  --seed N                seed of the randomized SVD and the sampling (default 23822)
  --threads N             native threads (default 0: the physical cores)
`;

function numberList(command: string, name: string, value: unknown): number[] | undefined {
  if (value === undefined) return undefined;
  const items = String(value).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (items.length === 0) throw new UsageError(`${command}: --${name} expects a comma-separated list of numbers in [0, 1]`);
  return items.map((item) => numberOption(command, name, item, 0, 0, 1));
}

/** The SVDQuantConfig input from parsed option values. */
export function quantConfigFromOptions(command: string, v: Record<string, unknown>): SVDQuantConfigInput {
  const [scheme] = listOption<SchemeName>(command, 'scheme', v.scheme, SCHEME_NAMES, ['w4a4']);
  if (v.scheme !== undefined && String(v.scheme).includes(',')) throw new UsageError(`${command}: --scheme takes one scheme`);
  const [mxScaleRule] = listOption<MxScaleRule>(command, 'mx-rule', v['mx-rule'], MX_SCALE_RULES, ['even']);
  const [svdMethod] = listOption<SvdMethod>(command, 'svd', v.svd, ['auto', 'exact', 'randomized'], ['auto']);
  const gptqTuning = v['gptq-block'] !== undefined || v['gptq-damp'] !== undefined || v['act-order'] === true;
  if (v.rtn === true && (v.gptq === true || gptqTuning)) throw new UsageError(`${command}: --rtn excludes --gptq, --gptq-block, --gptq-damp and --act-order`);
  if (v['search-alpha'] === true && v['no-search-alpha'] === true) throw new UsageError(`${command}: --search-alpha and --no-search-alpha exclude each other`);
  // The search is the default; a fixed --alpha/--beta or --no-search-alpha turns it off.
  const fixedAlpha = v['no-search-alpha'] === true || ((v.alpha !== undefined || v.beta !== undefined) && v['search-alpha'] !== true);
  const config: SVDQuantConfigInput = {
    scheme,
    rank: intOption(command, 'rank', v.rank, 32, 0, 65536),
    smooth: v['no-smooth'] !== true,
    smoothAlpha: numberOption(command, 'alpha', v.alpha, 0.5, 0, 1),
    smoothBeta: v.beta === undefined ? undefined : numberOption(command, 'beta', v.beta, 0.5, 0, 1),
    searchAlpha: !fixedAlpha,
    searchBeta: v['search-beta'] === true,
    alphaSearchMaxSamples: intOption(command, 'max-samples', v['max-samples'], 1024, 0, 1 << 24),
    holdout: numberOption(command, 'holdout', v.holdout, 0.25, 0, 0.9),
    exclude: (v.exclude as string[] | undefined) ?? [],
    minDim: intOption(command, 'min-dim', v['min-dim'], 0, 0, 2 ** 31),
    refineIterations: intOption(command, 'refine', v.refine, 0, 0, 1000),
    gptq: v.rtn !== true ? {
      blockSize: intOption(command, 'gptq-block', v['gptq-block'], 128, 1, 1 << 20),
      damp: numberOption(command, 'gptq-damp', v['gptq-damp'], 0.01, 0, 1e6),
      actOrder: v['act-order'] === true,
    } : false,
    mxScaleRule,
    svd: { method: svdMethod },
    seed: intOption(command, 'seed', v.seed, 0x5d0e, 0, 2 ** 53),
    threads: intOption(command, 'threads', v.threads, 0, 0, 1024),
  };
  const alphas = numberList(command, 'alpha-candidates', v['alpha-candidates']);
  if (alphas) config.alphaCandidates = alphas;
  const betas = numberList(command, 'beta-candidates', v['beta-candidates']);
  if (betas) config.betaCandidates = betas;
  if (v['search-beta'] === true && fixedAlpha) throw new UsageError(`${command}: --search-beta needs the alpha search (drop --no-search-alpha, or add --search-alpha to --alpha/--beta)`);
  if (v['no-smooth'] === true && (v.alpha !== undefined || v.beta !== undefined || v['search-alpha'] === true || v['no-search-alpha'] === true)) {
    throw new UsageError(`${command}: --no-smooth excludes --alpha, --beta, --search-alpha and --no-search-alpha`);
  }
  return config;
}
