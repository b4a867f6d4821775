import t from 'tap';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import pngjs from 'pngjs';
import { createImage, type Image, type ImageChannels } from '../lib/image/image.js';
import { imageGrid } from '../lib/image/grid.js';
import { writePng } from '../lib/image/png.js';
import { TEXT_LINE_HEIGHT, textWidth } from '../lib/image/text.js';

/** A cell whose every pixel says where it came from: values 60..250, never the ink (0) or background (255). */
function cell(id: number, width = 28, height = 28, channels: ImageChannels = 1): Image {
  const image = createImage(width, height, channels);
  for (let i = 0; i < image.data.length; i++) image.data[i] = 60 + ((id * 37 + i * 11) % 190);
  return image;
}

interface Box { x: number; y: number; w: number; h: number }
const inside = (b: Box, x: number, y: number) => x >= b.x && y >= b.y && x < b.x + b.w && y < b.y + b.h;
const gray = (image: Image, x: number, y: number) => image.data[(y * image.width + x) * image.channels];

t.test('no labels: size is padding plus the scaled cells, each cell enlarged by nearest neighbour', async (t) => {
  const cells = [0, 1, 2, 3, 4, 5].map((id) => cell(id));
  const grid = imageGrid(cells, { rows: 2, cols: 3, scale: 2, padding: 4 });
  // width = 4 + 3 * (56 + 4), height = 4 + 2 * (56 + 4)
  t.same([grid.width, grid.height, grid.channels], [184, 124, 1]);
  let mismatches = 0;
  for (let r = 0; r < 2; r++) {
    for (let c = 0; c < 3; c++) {
      const source = cells[r * 3 + c];
      for (let y = 0; y < 56; y++) {
        for (let x = 0; x < 56; x++) {
          if (gray(grid, 4 + c * 60 + x, 4 + r * 60 + y) !== source.data[Math.floor(y / 2) * 28 + Math.floor(x / 2)]) mismatches++;
        }
      }
    }
  }
  t.equal(mismatches, 0, 'cell (r, c) at (4 + 60c, 4 + 60r), every source pixel a 2x2 block');
  const cellBoxes = [0, 1, 2, 3, 4, 5].map((i): Box => ({ x: 4 + (i % 3) * 60, y: 4 + Math.floor(i / 3) * 60, w: 56, h: 56 }));
  let stray = 0;
  for (let y = 0; y < grid.height; y++) for (let x = 0; x < grid.width; x++) if (!cellBoxes.some((b) => inside(b, x, y)) && gray(grid, x, y) !== 255) stray++;
  t.equal(stray, 0, 'white everywhere else');
});

t.test('labels and title: the layout grows by their sizes and each puts ink only in its own box', async (t) => {
  const rowLabels = ['fp32', 'naive 4-bit', 'SVDQuant w4a4'];
  const colLabels = ['seed 0', 'seed 1'];
  const title = 'T';
  const p = 3;
  const s = 2; // labelScale
  const line = TEXT_LINE_HEIGHT * s;
  const cells = [0, 1, 2, 3, 4, 5].map((id) => cell(id));
  const grid = imageGrid(cells, { rows: 3, cols: 2, rowLabels, colLabels, title, padding: p, labelScale: s });

  const rowLabelWidth = Math.max(...rowLabels.map((l) => textWidth(l, s)));
  const slot = Math.max(28, ...colLabels.map((l) => textWidth(l, s)));
  const left = p + rowLabelWidth + p;
  const top = p + line + p + line + p;
  t.same([grid.width, grid.height], [left + 2 * (slot + p), top + 3 * (28 + p)]);

  const boxes: Array<{ name: string; box: Box; ink: boolean }> = [];
  const titleWidth = textWidth(title, s);
  boxes.push({ name: 'title', box: { x: Math.floor((grid.width - titleWidth) / 2), y: p, w: titleWidth, h: line }, ink: true });
  colLabels.forEach((label, c) => {
    const w = textWidth(label, s);
    boxes.push({ name: `column label ${c}`, box: { x: left + c * (slot + p) + Math.floor((slot - w) / 2), y: p + line + p, w, h: line }, ink: true });
  });
  rowLabels.forEach((label, r) => {
    boxes.push({ name: `row label ${r}`, box: { x: p, y: top + r * (28 + p) + Math.floor((28 - line) / 2), w: textWidth(label, s), h: line }, ink: true });
  });
  for (let i = 0; i < 6; i++) {
    const [r, c] = [Math.floor(i / 2), i % 2];
    boxes.push({ name: `cell ${i}`, box: { x: left + c * (slot + p) + Math.floor((slot - 28) / 2), y: top + r * (28 + p), w: 28, h: 28 }, ink: false });
  }
  for (const { name, box, ink } of boxes) {
    let inked = 0;
    for (let y = box.y; y < box.y + box.h; y++) for (let x = box.x; x < box.x + box.w; x++) if (gray(grid, x, y) === 0) inked++;
    if (ink) t.ok(inked > 0.05 * box.w * box.h, `${name}: ink inside its box (${inked} px)`);
    else t.equal(inked, 0, `${name}: no ink over the cell`);
  }
  let stray = 0;
  for (let y = 0; y < grid.height; y++) for (let x = 0; x < grid.width; x++) if (!boxes.some((b) => inside(b.box, x, y)) && gray(grid, x, y) !== 255) stray++;
  t.equal(stray, 0, 'nothing drawn outside the label and cell boxes');
  // Every cell is where the layout says, unchanged.
  for (let i = 0; i < 6; i++) {
    const box = boxes.find((b) => b.name === `cell ${i}`)!.box;
    const got = Array.from({ length: 28 * 28 }, (_, k) => gray(grid, box.x + (k % 28), box.y + Math.floor(k / 28)));
    t.same(got, Array.from(cells[i].data), `cell ${i} copied exactly`);
  }
});

t.test('a title wider than the grid widens the image; a label wider than a cell widens the columns', async (t) => {
  const title = 'a title much wider than one small cell';
  const grid = imageGrid([cell(0, 12, 12)], { rows: 1, cols: 1, title, padding: 2, labelScale: 1 });
  t.equal(grid.width, textWidth(title, 1) + 4);
  const wide = imageGrid([cell(0, 12, 12), cell(1, 12, 12)], { rows: 1, cols: 2, colLabels: ['a long column label', 'b'], padding: 2, labelScale: 1 });
  t.equal(wide.width, 2 + 2 * (textWidth('a long column label', 1) + 2));
});

t.test('mixed cells: RGB output, gray repeated, RGBA blended over the background, smaller cells centred', async (t) => {
  const g = createImage(4, 4, 1, 100);
  const rgb = createImage(4, 4, 3);
  rgb.data.set([10, 20, 30]); // pixel (0, 0)
  const rgba = createImage(4, 4, 4);
  rgba.data.set([200, 100, 50, 255, 200, 100, 50, 0, 200, 100, 50, 128]); // pixels (0..2, 0)
  const small = createImage(2, 2, 1, 7);
  const grid = imageGrid([g, rgb, rgba, small], { rows: 1, cols: 4, padding: 1 });
  t.same([grid.width, grid.height, grid.channels], [1 + 4 * 5, 1 + 5, 3]);
  const px = (x: number, y: number) => Array.from(grid.data.subarray((y * grid.width + x) * 3, (y * grid.width + x) * 3 + 3));
  t.same(px(1, 1), [100, 100, 100], 'gray cell repeated into RGB');
  t.same(px(6, 1), [10, 20, 30], 'RGB cell as is');
  t.same(px(11, 1), [200, 100, 50], 'opaque RGBA pixel');
  t.same(px(12, 1), [255, 255, 255], 'transparent RGBA pixel shows the background');
  // (v * 128 + 255 * 127) / 255, rounded: 200 -> 227.4 -> 227, 100 -> 177.2 -> 177, 50 -> 152.1 -> 152
  t.same(px(13, 1), [227, 177, 152], 'half-transparent pixel blended');
  // The fourth slot spans x 16..19, y 1..4; the 2x2 cell sits at x 17..18, y 2..3.
  const white = [255, 255, 255];
  const seven = [7, 7, 7];
  t.same(
    [px(16, 2), px(17, 1), px(17, 2), px(18, 2), px(17, 3), px(18, 3), px(19, 3), px(18, 4)],
    [white, white, seven, seven, seven, seven, white, white],
    'the 2x2 cell centred in its 4x4 slot',
  );
});

t.test('a dark background gets white labels', async (t) => {
  const grid = imageGrid([cell(0, 12, 12)], { rows: 1, cols: 1, rowLabels: ['x'], background: 20, padding: 2, labelScale: 1 });
  t.ok(grid.data.includes(255), 'white ink');
  t.notOk(grid.data.includes(0), 'no black ink');
  t.equal(grid.data[0], 20);
});

t.test('a grid of 28x28 samples writes to a PNG of the grid size', async (t) => {
  const dir = t.testdir();
  const grid = imageGrid([0, 1, 2, 3].map((id) => cell(id)), { rows: 2, cols: 2, scale: 4, rowLabels: ['fp32', 'w4a4'], colLabels: ['0', '1'], title: 'demo' });
  await writePng(join(dir, 'grid.png'), grid);
  const read = pngjs.PNG.sync.read(await readFile(join(dir, 'grid.png')));
  t.same([read.width, read.height], [grid.width, grid.height]);
  t.same(Array.from(read.data.filter((_, i) => i % 4 === 0)), Array.from(grid.data));
});

t.test('bad arguments get ArgumentErrors naming the option or cell', async (t) => {
  const cells = [cell(0), cell(1)];
  t.throws(() => imageGrid(cells, { rows: 1, cols: 3 }), { name: 'ArgumentError', argument: 'cells', message: /rows \* cols = 3/ });
  t.throws(() => imageGrid(cells, { rows: 0, cols: 2 }), { name: 'ArgumentError', argument: 'options.rows' });
  t.throws(() => imageGrid(cells, { rows: 1 } as never), { name: 'ArgumentError', argument: 'options.cols' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, rowLabels: ['a', 'b'] }), { name: 'ArgumentError', argument: 'options.rowLabels', message: /1 strings/ });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, colLabels: ['a', 2] as never }), { name: 'ArgumentError', argument: 'options.colLabels' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, title: 3 } as never), { name: 'ArgumentError', argument: 'options.title' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, scale: 0 }), { name: 'ArgumentError', argument: 'options.scale' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, padding: -1 }), { name: 'ArgumentError', argument: 'options.padding' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, background: 256 }), { name: 'ArgumentError', argument: 'options.background' });
  t.throws(() => imageGrid(cells, { rows: 1, cols: 2, labels: [] } as never), { name: 'ArgumentError', argument: 'options.labels', message: /no such option/ });
  t.throws(() => imageGrid([cell(0), { width: 2 } as never], { rows: 1, cols: 2 }), { name: 'ArgumentError', argument: 'cells[1]' });
  t.throws(() => imageGrid('x' as never, { rows: 1, cols: 1 }), { name: 'ArgumentError', argument: 'cells' });
  t.throws(() => imageGrid(cells, null as never), { name: 'ArgumentError', argument: 'options' });
  t.throws(() => imageGrid([cell(0, 1, 1)], { rows: 1, cols: 1, padding: 1024, scale: 64, title: 'x'.repeat(300), labelScale: 64 }), { name: 'ArgumentError', argument: 'options', message: /at most 65536 pixels/ });
});

t.test('the image API is exported from the package entry', async (t) => {
  const api = await import('../lib/index.js');
  for (const name of ['tensorToImages', 'encodePng', 'writePng', 'imageGrid', 'psnr', 'ssim', 'createImage', 'scaleImage', 'isImage', 'renderText', 'drawText', 'textWidth']) {
    t.equal(typeof (api as Record<string, unknown>)[name], 'function', name);
  }
});
