// Child process of io-checkpoint.test.ts: builds the fixture model with OTHER seeds, loads the
// checkpoint given as argv[2], runs the fixture input and writes the output's bytes to argv[3].
import { writeFileSync } from 'node:fs';
import { loadCheckpoint } from '../../lib/index.js';
import { buildModel, input } from './model-fixture.js';

const model = buildModel(12345);
await loadCheckpoint(process.argv[2], model);
const y = await model.call(input());
writeFileSync(process.argv[3], Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
