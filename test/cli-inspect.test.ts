/**
 * `svdquant inspect`, run as a user would: node dist/cli/main.js (the test runner builds dist/
 * with `tsc -p tsconfig.build.json` first).
 */
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { serializeSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { ROOT, assertOneLineError, requireBuiltCli, svdquant as run, type CliResult } from './support/cli.js';

const svdquant = (...args: string[]): Promise<CliResult> => run(args);
t.before(requireBuiltCli);
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;



async function fixture(t: Test): Promise<string> {
  const dir = t.testdir();
  const path = join(dir, 'model.safetensors');
  await writeSafetensors(
    path,
    [
      { name: 'blocks.0.attn.qkv.weight', dtype: 'BF16', shape: [96, 32], data: new Uint8Array(96 * 32 * 2) },
      { name: 'blocks.0.attn.qkv.bias', dtype: 'F32', shape: [96], data: new Uint8Array(96 * 4) },
      { name: 'step', dtype: 'I64', shape: [], data: new Uint8Array(8) },
      { name: 'empty', dtype: 'F16', shape: [0, 3], data: new Uint8Array(0) },
    ],
    { format: 'pt', producer: 'svdquant tests' },
  );
  return path;
}

t.test('inspect prints a table of tensors, metadata and totals', async (t) => {
  const path = await fixture(t);
  const result = await svdquant('inspect', path);
  t.equal(result.code, 0);
  t.equal(result.stderr, '');
  const out = result.stdout;
  t.match(out, `file: ${path}`);
  t.match(out, /metadata \(2 entries\)\n {2}format: +pt\n {2}producer: +svdquant tests\n/);
  t.match(out, /tensors \(4\)\n {2}NAME +DTYPE +SHAPE +PARAMETERS +BYTES +SIZE\n/);
  t.match(out, /\n {2}blocks\.0\.attn\.qkv\.weight +BF16 +\[96, 32\] +3,072 +6,144 +6\.0 KiB\n/);
  t.match(out, /\n {2}blocks\.0\.attn\.qkv\.bias +F32 +\[96\] +96 +384 +384 B\n/);
  t.match(out, /\n {2}step +I64 +\[\] +1 +8 +8 B\n/);
  t.match(out, /\n {2}empty +F16 +\[0, 3\] +0 +0 +0 B\n/);
  t.match(out, /\ntotal: 4 tensors, 3,169 parameters, 6\.4 KiB \(6,536 bytes\)\n$/);
  const size = (await stat(path)).size;
  t.match(out, new RegExp(`size: .* \\(${size.toLocaleString('en-US')} bytes; header \\d+ bytes\\)`));
});

t.test('inspect --json prints one parseable document with the right numbers', async (t) => {
  const path = await fixture(t);
  for (const args of [['inspect', path, '--json'], ['inspect', '--json', path]]) {
    const result = await svdquant(...args);
    t.equal(result.code, 0, args.join(' '));
    t.equal(result.stderr, '');
    const report = JSON.parse(result.stdout) as {
      file: string;
      fileBytes: number;
      headerBytes: number;
      metadata: Record<string, string>;
      tensors: Array<{ name: string; dtype: string; shape: number[]; parameters: number; bytes: number; offset: number }>;
      totals: { tensors: number; parameters: number; bytes: number };
    };
    t.equal(report.file, path);
    t.equal(report.fileBytes, (await stat(path)).size);
    t.same(report.metadata, { format: 'pt', producer: 'svdquant tests' });
    t.same(report.tensors.map((x) => [x.name, x.dtype, x.shape, x.parameters, x.bytes]), [
      ['blocks.0.attn.qkv.weight', 'BF16', [96, 32], 3072, 6144],
      ['blocks.0.attn.qkv.bias', 'F32', [96], 96, 384],
      ['step', 'I64', [], 1, 8],
      ['empty', 'F16', [0, 3], 0, 0],
    ]);
    t.equal(report.tensors[0].offset, 8 + report.headerBytes);
    t.equal(report.tensors[1].offset, 8 + report.headerBytes + 6144);
    t.same(report.totals, { tensors: 4, parameters: 3169, bytes: 6536 });
    t.equal(report.fileBytes, 8 + report.headerBytes + report.totals.bytes);
  }
});

t.test('an empty file (no tensors, no metadata)', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'empty.safetensors');
  await writeFile(path, serializeSafetensors([]));
  const text = await svdquant('inspect', path);
  t.equal(text.code, 0);
  t.match(text.stdout, /metadata \(0 entries\)\n\ntensors \(0\)\n\ntotal: 0 tensors, 0 parameters, 0 B \(0 bytes\)\n/);
  const json = await svdquant('inspect', path, '--json');
  t.same(JSON.parse(json.stdout).totals, { tensors: 0, parameters: 0, bytes: 0 });
});

t.test('names with control characters are quoted so the table stays intact', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'odd.safetensors');
  await writeFile(path, serializeSafetensors([{ name: 'two\nlines', dtype: 'U8', shape: [1], data: new Uint8Array(1) }]));
  const result = await svdquant('inspect', path);
  t.equal(result.code, 0);
  t.match(result.stdout, /\n {2}"two\\nlines" +U8 +\[1\]/);
  t.same(JSON.parse((await svdquant('inspect', path, '--json')).stdout).tensors[0].name, 'two\nlines');
});

t.test('a malformed file: one line on stderr, exit 1', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'bad.safetensors');
  const header = Buffer.from('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  await writeFile(path, Buffer.concat([prefix, header, Buffer.alloc(8)]));
  assertOneLineError(t, await svdquant('inspect', path), 1, /^svdquant: malformed file '.*bad\.safetensors': tensor "w": data_offsets \[0, 8\] span 8 bytes: expected 12 bytes/);
  assertOneLineError(t, await svdquant('inspect', path, '--json'), 1, /malformed file/);

  const newlines = join(dir, 'newlines.safetensors');
  const text = Buffer.from('{"a\nb": 1,\n');
  prefix.writeBigUInt64LE(BigInt(text.length));
  await writeFile(newlines, Buffer.concat([prefix, text]));
  assertOneLineError(t, await svdquant('inspect', newlines), 1, /header is not valid JSON/);

  const tiny = join(dir, 'tiny.safetensors');
  await writeFile(tiny, 'abc');
  assertOneLineError(t, await svdquant('inspect', tiny), 1, /file is 3 bytes long/);
});

t.test('a missing file or a directory: one line on stderr, exit 1', async (t) => {
  const dir = t.testdir({ sub: {} });
  assertOneLineError(t, await svdquant('inspect', join(dir, 'nope.safetensors')), 1, /^svdquant: could not open '.*nope\.safetensors': ENOENT/);
  assertOneLineError(t, await svdquant('inspect', join(dir, 'sub')), 1, /^svdquant: could not read '.*sub'/);
});

t.test('bad usage: one line on stderr, exit 2', async (t) => {
  assertOneLineError(t, await svdquant(), 2, /missing command/);
  assertOneLineError(t, await svdquant('frobnicate'), 2, /unknown command "frobnicate": expected one of demo, quantize, calibrate, inspect, bench, doctor/);
  assertOneLineError(t, await svdquant('--frob'), 2, /unknown option '--frob'/);
  assertOneLineError(t, await svdquant('inspect'), 2, /inspect: expected exactly one FILE\.safetensors argument, got 0/);
  assertOneLineError(t, await svdquant('inspect', 'a', 'b'), 2, /got 2/);
  assertOneLineError(t, await svdquant('inspect', 'a', '--yaml'), 2, /inspect: Unknown option '--yaml'/);
  assertOneLineError(t, await svdquant('inspect', 'a', '--json=yes'), 2, /inspect: Option '--json' does not take an argument/);
});

t.test('help and version', async (t) => {
  for (const flag of ['--help', '-h']) {
    const result = await svdquant(flag);
    t.equal(result.code, 0, flag);
    t.equal(result.stderr, '');
    t.match(result.stdout, /^Usage: svdquant <command> \[options\]\n/);
    t.match(result.stdout, /\n {2}inspect +list the tensors and metadata of a \.safetensors file/);
    for (const name of ['demo', 'quantize', 'calibrate', 'bench', 'doctor']) t.match(result.stdout, new RegExp(`\\n {2}${name} +\\w`), `lists ${name}`);
    t.match(result.stdout, /\nExamples:\n {2}svdquant demo\n/, 'examples, the demo first');
  }
  const inspectHelp = await svdquant('inspect', '--help');
  t.equal(inspectHelp.code, 0);
  t.match(inspectHelp.stdout, /^Usage: svdquant inspect FILE\.safetensors \[--json\]\n/);
  t.match(inspectHelp.stdout, /--json/);

  const version = await svdquant('--version');
  t.equal(version.code, 0);
  t.equal(version.stdout, `${VERSION}\n`);
  t.equal(version.stderr, '');
});
