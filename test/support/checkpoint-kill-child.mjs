// Child process of io-checkpoint-crash.test.ts: saves two checkpoints to argv[2] in turn, forever,
// until the test kills it with SIGKILL at a random moment. Plain JavaScript over the built package
// (dist/), so it starts fast; the models are those of crashModel() in io-checkpoint-crash.test.ts.
import { LayerNorm, Linear, Sequential, saveCheckpoint } from '../../dist/index.js';

const model = (seed) => new Sequential(new Linear(512, 512, { seed }), new LayerNorm(512), new Linear(512, 384, { seed: seed + 1 }));
const models = [model(3), model(1)];
process.stdout.write('saving\n');
for (let i = 0; ; i++) await saveCheckpoint(models[i % 2], process.argv[2]);
