/** `svdquant serve` / `svdquant worker` command lines: help, and bad usage as one-line errors. */
import t from 'tap';
import { assertOneLineError, requireBuiltCli, svdquant } from './support/cli.js';

t.before(requireBuiltCli);

t.test('help lists the endpoints and options', async (t) => {
  const serve = await svdquant(['serve', '--help']);
  t.equal(serve.code, 0);
  t.match(serve.stdout, /^Usage: svdquant serve /);
  t.match(serve.stdout, /POST \/v1\/images/);
  for (const option of ['--max-batch', '--max-queue', '--batch-window-ms', '--queue', '--backend', '--shutdown-timeout-ms']) t.match(serve.stdout, option);
  const worker = await svdquant(['worker', '--help']);
  t.equal(worker.code, 0);
  for (const option of ['--queue', '--lock-duration-ms', '--stalled-interval-ms', '--max-batch']) t.match(worker.stdout, option);
  const list = await svdquant(['--help']);
  t.match(list.stdout, /serve/);
  t.match(list.stdout, /worker/);
});

t.test('bad usage: exit 2 with one line', async (t) => {
  assertOneLineError(t, await svdquant(['serve', '--max-batch', '0']), 2, /serve: --max-batch expects an integer in \[1, 64\], got "0"/);
  assertOneLineError(t, await svdquant(['serve', '--port', '70000']), 2, /--port expects an integer in \[0, 65535\]/);
  assertOneLineError(t, await svdquant(['serve', '--backend', 'tpu']), 2, /--backend expects one of auto, cpu, cuda, hip, reference, got "tpu"/);
  assertOneLineError(t, await svdquant(['serve', 'extra']), 2, /serve: expected no arguments/);
  assertOneLineError(t, await svdquant(['worker']), 2, /worker: --queue redis:\/\/HOST:PORT is required/);
  const badUrl = await svdquant(['serve', '--queue', 'http://localhost:6379']);
  t.not(badUrl.code, 0);
  t.match(badUrl.stderr, /invalid argument 'queue': expected a redis:\/\/ or rediss:\/\/ URL/);
});
