// Output paths are checked before any work (issue 18): a folder that is missing, not a folder, on
// a kernel pseudo file system (/proc, /sys) or not writable, and a target that is not a regular
// file, each give an IoError naming the path; makeDirectory never hangs (Node's recursive mkdir
// loops forever on /proc/foo).
import t from 'tap';
import { chmod, mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { IoError } from '../lib/errors.js';
import { checkOutputDirectory, checkOutputFile, makeDirectory, resolveOutputFile } from '../lib/io/output-path.js';

t.test('checkOutputFile: absent or regular targets in a usable folder pass; everything else is an IoError', async (t) => {
  const dir = t.testdir({ 'old.bin': 'x', sub: {} });
  await checkOutputFile(join(dir, 'old.bin'));
  await checkOutputFile(join(dir, 'new.bin'));
  t.equal(await resolveOutputFile(join(dir, 'sub', '..', 'new.bin')), join(dir, 'new.bin'), 'resolved to an absolute path');
  const cases: Array<[string, RegExp]> = [
    [join(dir, 'sub'), /^could not write '.*sub': it is a directory: expected a regular file or a new file name$/],
    [join(dir, 'missing', 'x.bin'), /^could not write '.*x\.bin': directory '.*missing' does not exist$/],
    [join(dir, 'old.bin', 'x.bin'), /^could not write '.*x\.bin': '.*old\.bin' is a regular file, not a directory$/],
    ['/dev/null', /it is a character device/],
  ];
  if (process.platform === 'linux') {
    cases.push(['/proc/x.svg', /^could not write '\/proc\/x\.svg': '\/proc' is on the kernel's proc pseudo file system: expected a directory on an ordinary file system$/]);
    cases.push(['/sys/kernel/x', /sysfs pseudo file system/]);
  }
  for (const [path, pattern] of cases) {
    await t.rejects(checkOutputFile(path), { name: 'IoError', code: 'ERR_SVDQ_IO', file: path, message: pattern }, path);
  }
  t.same((await readdir(dir)).sort(), ['old.bin', 'sub'], 'nothing created');
});

t.test('a folder without write permission is refused (when not running as root)', { skip: process.getuid?.() === 0 ? 'root may write anywhere' : false }, async (t) => {
  const dir = t.testdir({ locked: {} });
  await chmod(join(dir, 'locked'), 0o555);
  t.teardown(() => chmod(join(dir, 'locked'), 0o755));
  await t.rejects(checkOutputFile(join(dir, 'locked', 'x.bin')), { name: 'IoError', message: /directory '.*locked' is not writable \(EACCES\)/ });
});

t.test('checkOutputDirectory and makeDirectory: create what is missing, refuse what cannot be, never hang', async (t) => {
  const dir = t.testdir({ file: 'x' });
  await checkOutputDirectory(dir, { create: false });
  await t.rejects(checkOutputDirectory(join(dir, 'a'), { create: false }), IoError, 'missing and not to be created');
  await checkOutputDirectory(join(dir, 'a', 'b', 'c'), { create: true });
  t.same(await readdir(dir), ['file'], 'a check creates nothing');
  await makeDirectory(join(dir, 'a', 'b', 'c'));
  t.ok((await stat(join(dir, 'a', 'b', 'c'))).isDirectory());
  await makeDirectory(join(dir, 'a', 'b', 'c'));
  t.pass('an existing folder is fine');
  await t.rejects(makeDirectory(join(dir, 'file', 'x')), { name: 'IoError', message: /'.*file' is a regular file, not a directory/ });
  await t.rejects(makeDirectory('/dev/null/x'), { name: 'IoError', message: /'\/dev\/null' is a character device, not a directory/ });
  if (process.platform === 'linux') {
    // Node's mkdir('/proc/foo', { recursive: true }) never settles; this must fail at once.
    await t.rejects(makeDirectory('/proc/svdquant-test/deeper'), { name: 'IoError', file: '/proc/svdquant-test/deeper', message: /'\/proc' is on the kernel's proc pseudo file system/ });
    await t.rejects(checkOutputDirectory('/proc', { create: false }), { name: 'IoError', message: /proc pseudo file system/ });
  }
  await mkdir(join(dir, 'plain'));
  await writeFile(join(dir, 'plain', 'x'), '');
  await checkOutputDirectory(join(dir, 'plain'), { create: false });
});
