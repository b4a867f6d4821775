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
  t.match((error as IoError).message, /^could not write '.*target\.bin': directory '.*missing' does not exist$/);
  t.equal((error as IoError).file, target);
  t.notOk(called, 'the callback never ran');
  t.same(await readdir(dir), []);
});

t.test('a directory as the target is refused before anything is written', async (t) => {
  const dir = t.testdir({ target: { 'inside.txt': 'keep' } });
  const target = join(dir, 'target');
  let called = false;
  const error = await writeFileAtomic(target, async (handle) => void (called = true, await handle.write('data', 0))).catch((e: unknown) => e);
  t.type(error, IoError);
  t.match((error as IoError).message, /^could not write '.*target': it is a directory: expected a regular file or a new file name$/);
  t.notOk(called, 'the callback never ran');
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

t.test('only regular files are replaced: devices, pipes and /proc are refused untouched (issue 18)', async (t) => {
  const { execFileSync } = await import('node:child_process');
  const { statSync } = await import('node:fs');
  const dir = t.testdir();
  const write = async (handle: import('node:fs/promises').FileHandle) => void (await handle.write('data', 0));
  // /dev/null is only inspected, never written: the check comes before any file is created.
  const before = statSync('/dev/null');
  await t.rejects(writeFileAtomic('/dev/null', write), { name: 'IoError', file: '/dev/null', message: /^could not write '\/dev\/null': it is a character device: expected a regular file or a new file name$/ });
  t.ok(statSync('/dev/null').isCharacterDevice(), '/dev/null is still a device');
  t.equal(statSync('/dev/null').ino, before.ino);
  if (process.platform === 'linux') {
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    await t.rejects(writeFileAtomic(fifo, write), { name: 'IoError', message: /it is a named pipe/ });
    t.ok(statSync(fifo).isFIFO());
    await t.rejects(writeFileAtomic('/proc/svdquant-test', write), { name: 'IoError', message: /'\/proc' is on the kernel's proc pseudo file system/ });
    await t.rejects(writeFileAtomic('/sys/svdquant-test', write), { name: 'IoError', message: /sysfs pseudo file system/ });
  }
  t.same((await readdir(dir)).filter((name) => name.endsWith(ATOMIC_TEMP_SUFFIX)), [], 'no temporary file anywhere');
});

t.test('a symbolic link to a regular file stays a link; the file it points to is replaced', async (t) => {
  const { symlink, lstat } = await import('node:fs/promises');
  const dir = t.testdir({ real: { 'file.bin': OLD }, links: {} });
  const link = join(dir, 'links', 'file.bin');
  await symlink(join(dir, 'real', 'file.bin'), link);
  await writeFileAtomic(link, async (handle) => void (await handle.write('new', 0)));
  t.ok((await lstat(link)).isSymbolicLink(), 'still a link');
  t.equal(await readFile(join(dir, 'real', 'file.bin'), 'utf8'), 'new');
  t.same(await readdir(join(dir, 'links')), ['file.bin'], 'no temporary file next to the link');
  t.same(await readdir(join(dir, 'real')), ['file.bin'], 'nor next to the file');
  const dangling = join(dir, 'links', 'dangling');
  await symlink(join(dir, 'nowhere'), dangling);
  await t.rejects(writeFileAtomic(dangling, async () => undefined), { name: 'IoError', message: /symbolic link to a missing file/ });
});

t.test('temporary files of dead writers on this machine are swept before the next write to the folder', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const { HOST_TAG, tempOwner } = await import('../lib/io/temp-files.js');
  const dir = t.testdir({ 'target.bin': OLD });
  // A pid that existed and is gone: a child process that has exited.
  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid!;
  const otherHost = HOST_TAG === '00000000' ? '11111111' : '00000000';
  const names = {
    dead: `.target.bin.${deadPid}@${HOST_TAG}.0123456789ab${ATOMIC_TEMP_SUFFIX}`,
    alive: `.target.bin.${process.pid}@${HOST_TAG}.0123456789ab${ATOMIC_TEMP_SUFFIX}`,
    otherHost: `.target.bin.${deadPid}@${otherHost}.0123456789ab${ATOMIC_TEMP_SUFFIX}`,
    unrelated: `.notes.svdq-tmp.txt`,
  };
  for (const name of Object.values(names)) await writeFile(join(dir, name), 'partial');
  t.same(tempOwner(names.dead), { pid: deadPid, host: HOST_TAG });
  t.equal(tempOwner('model.safetensors'), undefined);
  await writeFileAtomic(join(dir, 'other.bin'), async (handle) => void (await handle.write('x', 0)));
  const left = await readdir(dir);
  t.notOk(left.includes(names.dead), "a dead writer's temporary file is removed");
  t.ok(left.includes(names.alive), "a live writer's (this process's) file is left alone");
  t.ok(left.includes(names.otherHost), "another machine's file is left alone (its pid means nothing here)");
  t.ok(left.includes(names.unrelated), 'other files are never touched');
  t.equal(await readFile(join(dir, 'target.bin'), 'utf8'), OLD);
});
