// Child process of io-atomic-write-signals.test.ts: starts an atomic write of argv[2], writes part
// of the data, reports the temporary file on stdout ("writing <path>") and then waits (never
// finishing the write) until a signal arrives. argv[3] = 'own-handler' installs the application's
// own SIGTERM handler, which exits with status 42.
import { readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { writeFileAtomic } from '../../lib/io/atomic-write.js';

const target = process.argv[2];
if (process.argv[3] === 'own-handler') {
  process.on('SIGTERM', () => {
    process.stdout.write('application handler\n');
    process.exit(42);
  });
}
const keepAlive = setInterval(() => undefined, 1 << 30);
await writeFileAtomic(target, async (handle) => {
  await handle.write(Buffer.alloc(1 << 20, 7), 0, 1 << 20, 0);
  const temp = readdirSync(dirname(target)).find((name) => name.startsWith(`.${basename(target)}.`));
  process.stdout.write(`writing ${join(dirname(target), temp ?? '?')}\n`);
  await new Promise(() => undefined); // never resolves: the signal ends the process mid-write
});
clearInterval(keepAlive);
