/**
 * Quality benchmark (issue 4 item 8): `node --import tsx bench/quality.ts [--json FILE] [--threads N]
 * [--no-timings] [--large]`. Prints the table scheme × method × rank → ‖Y_q − Y‖/‖Y‖ of the deployed
 * layer on synthetic diffusion-transformer layers, one JSON record per cell
 * {kind: 'quality', scheme, method, rank, relError, layer}, and timings of quantizeLinear for one
 * 3072 → 12288 layer with rank 32 (fixed α RTN, 10-candidate α search on 1024 tokens, GPTQ residual).
 * Benchmarks never assert. The suite lives in lib/bench/quality.ts (`svdquant bench --suite quality`).
 */
import { jsonLines, writeTextAtomic } from '../lib/bench/files.js';
import { qualityLayerMarkdown, quantizeTimingsMarkdown } from '../lib/bench/markdown.js';
import { parseCount } from '../lib/bench/options.js';
import { runQualityBench } from '../lib/bench/quality.js';

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const jsonFile = opt('--json');
const threads = parseCount(opt('--threads') ?? '2', '--threads', 1, 1024);

const result = await runQualityBench(
  { threads, large: args.includes('--large'), timings: !args.includes('--no-timings') },
  {
    onLayer: (layer) => process.stdout.write(qualityLayerMarkdown(layer)),
    onTimings: (timings) => process.stdout.write(quantizeTimingsMarkdown(timings)),
  },
);

if (jsonFile !== undefined) {
  await writeTextAtomic(jsonFile, jsonLines(result.records));
  console.log(`\nwrote ${result.records.length} records to ${jsonFile}`);
}
