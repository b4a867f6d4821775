import t from 'tap';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArgumentError, IoError } from '../lib/errors.js';
import { ATOMIC_TEMP_SUFFIX, writeFileAtomic } from '../lib/io/atomic-write.js';

const OLD = 'old content that must survive';

t.test('replaces the target; the temp file lives next to it until the rename', async (t) => {
  const dir = t.testdir({ 'target.bin': OLD });
  const target = join(dir, 'target.bin');
  let seenDuringWrite: string[] = [];
  let targetDuringWrite = '';
  await writeFileAtomic(target, async (handle) => {
    await handle.write(Buffer.from('new '), 0, 4, 0);
    await handle.write(Buffer.from('content'), 0, 7, 4);
    seenDuringWrite = await readdir(dir);
    targetDuringWrite = await readFile(target, 'utf8');
  });
  t.equal(await readFile(target, 'utf8'), 'new content');
  t.equal(targetDuringWrite, OLD, 'readers see the old file until the rename');
  t.equal(seenDuringWrite.length, 2, 'target and one temporary file');
  t.ok(seenDuringWrite.some((name) => name.startsWith('.target.bin.') && name.endsWith(ATOMIC_TEMP_SUFFIX)));
  t.same(await readdir(dir), ['target.bin'], 'no temporary file left');
});

t.test('creates a new file', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'fresh.bin');
  await writeFileAtomic(target, async (handle) => void (await handle.write('abc', 0)));
  t.equal(await readFile(target, 'utf8'), 'abc');
});

t.test('a write that fails midway leaves the target byte-identical and no temp file', async (t) => {
  const dir = t.testdir({ 'target.bin': OLD });
  const target = join(dir, 'target.bin');
  const failure = new Error('simulated failure after half the data');
  await t.rejects(
    writeFileAtomic(target, async (handle) => {
      await handle.write(Buffer.from('partial'), 0, 7, 0);
      throw failure;
    }),
    failure,
    'the callback error propagates unchanged',
  );
  t.equal(await readFile(target, 'utf8'), OLD);
  t.same(await readdir(dir), ['target.bin']);
});

t.test('a file-system error inside the callback becomes an IoError naming the target', async (t) => {
  const dir = t.testdir({ 'target.bin': OLD });
  const target = join(dir, 'target.bin');
  const error = await writeFileAtomic(target, async () => {
    await readFile(join(dir, 'no-such-file'));
  }).catch((e: unknown) => e);
  t.type(error, IoError);
  t.match((error as IoError).message, /^could not write '.*target\.bin': ENOENT/);
  t.equal(await readFile(target, 'utf8'), OLD);
  t.same(await readdir(dir), ['target.bin']);
});

t.test('a missing directory is an IoError and creates nothing', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'missing', 'target.bin');
  let called = false;
  const error = await writeFileAtomic(target, async () => void (called = true)).catch((e: unknown) => e);
  t.type(error, IoError);
  t.match((error as IoError).message, /could not create a temporary file to write '.*target\.bin': ENOENT/);
  t.equal((error as IoError).file, target);
  t.notOk(called, 'the callback never ran');
  t.same(await readdir(dir), []);
});

t.test('a failing rename (target is a directory) leaves it alone and removes the temp file', async (t) => {
  const dir = t.testdir({ target: { 'inside.txt': 'keep' } });
  const target = join(dir, 'target');
  const error = await writeFileAtomic(target, async (handle) => void (await handle.write('data', 0))).catch((e: unknown) => e);
  t.type(error, IoError);
  t.match((error as IoError).message, /could not move the temporary file into place at '.*target'/);
  t.same(await readdir(dir), ['target']);
  t.equal(await readFile(join(target, 'inside.txt'), 'utf8'), 'keep');
});

t.test('argument checks', async (t) => {
  await t.rejects(writeFileAtomic('', async () => undefined), ArgumentError);
  // @ts-expect-error deliberately wrong type
  await t.rejects(writeFileAtomic('x', 'not a function'), ArgumentError);
});

t.test('the default mode honours the umask like an ordinary file', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'mode.bin');
  await writeFileAtomic(target, async () => undefined);
  const plain = join(dir, 'plain.bin');
  await writeFile(plain, '');
  const { stat } = await import('node:fs/promises');
  t.equal((await stat(target)).mode & 0o777, (await stat(plain)).mode & 0o777);
});

t.test('a target name near the file-name length limit still gets a temporary file', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'n'.repeat(250));
  await writeFileAtomic(target, async (handle) => void (await handle.write('ok', 0)));
  t.equal(await readFile(target, 'utf8'), 'ok');
  t.same(await readdir(dir), ['n'.repeat(250)]);
});
