// Every code block of the README works as written (issue 18: the quick start did not run).
// - js/ts blocks run as written, each in a fresh folder inside the package (so `import 'svdquant'`
//   resolves to this package), and must exit 0; the quick start is examples/quickstart.mjs verbatim.
// - Shell blocks and the `$ ` lines of transcripts: every `svdquant` command line is run with
//   `--help` appended, which the command accepts only when every option as written is valid (the
//   options are parsed before --help is looked at), without doing the work; every `npm run X` names
//   a script of package.json; every `node FILE` names a file of the repository.
// - Other blocks (the layout tree, outputs) are text.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, ROOT, requireBuiltCli } from './support/cli.js';

t.before(requireBuiltCli);

interface Block {
  lang: string;
  line: number;
  text: string;
}

function codeBlocks(markdown: string): Block[] {
  const blocks: Block[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    blocks.push({ lang: open[1], line: start + 1, text: body.join('\n') + '\n' });
  }
  return blocks;
}

/** Splits a shell command line into words (single and double quotes; no expansions needed here). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) words.push(m[1] ?? m[2] ?? m[3]);
  return words;
}

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const blocks = codeBlocks(README);
const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

t.test('the README has code blocks of each kind', async (t) => {
  t.ok(blocks.filter((b) => b.lang === 'js' || b.lang === 'ts').length >= 3, 'js/ts blocks');
  t.ok(blocks.some((b) => b.lang === 'sh'), 'shell blocks');
  t.ok(blocks.some((b) => b.lang === '' && /^\$ /m.test(b.text)), 'transcripts');
});

t.test('the quick start is examples/quickstart.mjs, verbatim', async (t) => {
  const example = readFileSync(join(ROOT, 'examples', 'quickstart.mjs'), 'utf8');
  t.ok(blocks.some((b) => b.lang === 'js' && b.text === example), 'a js block equals the example file (which examples.test.ts runs)');
});

for (const block of blocks.filter((b) => b.lang === 'js' || b.lang === 'ts')) {
  t.test(`README line ${block.line}: the ${block.lang} block runs as written`, async (t) => {
    const dir = t.testdir(); // under the package root: 'svdquant' resolves to this package
    const file = join(dir, `block.${block.lang === 'ts' ? 'mts' : 'mjs'}`);
    writeFileSync(file, block.text);
    const args = block.lang === 'ts' ? ['--import', 'tsx', file] : [file];
    const r = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr.slice(0, 2000)})`);
  });
}

t.test('every command line in shell blocks and transcripts is valid as written', async (t) => {
  const lines: Array<{ line: number; command: string }> = [];
  for (const block of blocks) {
    if (block.lang === 'sh') {
      block.text.split('\n').forEach((text, i) => {
        const command = text.replace(/#.*$/, '').trim();
        if (command !== '') lines.push({ line: block.line + 1 + i, command });
      });
    } else if (block.lang === '') {
      block.text.split('\n').forEach((text, i) => {
        if (text.startsWith('$ ')) lines.push({ line: block.line + 1 + i, command: text.slice(2) });
      });
    }
  }
  t.ok(lines.length >= 10, `${lines.length} command lines`);
  for (const { line, command } of lines) {
    for (const part of command.split(/&&|;/).map((p) => p.trim()).filter((p) => p !== '' && p !== 'echo $?')) {
      const words = shellWords(part);
      const at = `README line ${line}: ${part}`;
      if (words[0] === 'npx' && words[1] === 'svdquant') {
        const r = spawnSync(process.execPath, [CLI, ...words.slice(2), '--help'], { cwd: ROOT, encoding: 'utf8' });
        t.equal(r.status, 0, `${at} (options valid: ${r.stderr.trim()})`);
      } else if (words[0] === 'npm' && words[1] === 'run') {
        t.ok(Object.hasOwn(scripts, words[2]), `${at}: script '${words[2]}' exists`);
      } else if (words[0] === 'npm') {
        t.ok(['install', 'test'].includes(words[1]), `${at}: a known npm command`);
      } else if (words[0] === 'node') {
        const file = words.find((w, i) => i > 0 && !w.startsWith('-') && words[i - 1] !== '--import');
        t.ok(file !== undefined && existsSync(join(ROOT, file)), `${at}: ${file} exists`);
      } else {
        t.fail(`${at}: a command this test does not know how to check`);
      }
    }
  }
});
