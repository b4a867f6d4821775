import t from 'tap';
import { createImage } from '../lib/image/image.js';
import { TEXT_LINE_HEIGHT, drawText, renderText, textWidth } from '../lib/image/text.js';

const rows = (bitmap: { width: number; height: number; ink: Uint8Array }): string[] =>
  Array.from({ length: bitmap.height }, (_, y) => Array.from(bitmap.ink.subarray(y * bitmap.width, (y + 1) * bitmap.width), (v) => (v ? '#' : '.')).join(''));

t.test('renders a label as the font draws it: capitals 7 high, descenders below', async (t) => {
  // "fp32" in the Seven plus font (glyphs f, p, 3, 2 with the font's one-column gaps); the p's
  // stem runs into the two descender rows.
  t.same(rows(renderText('fp32')), [
    '..##......##...##.',
    '.#.......#..#.#..#',
    '###.###.....#....#',
    '.#..#..#..##....#.',
    '.#..#..#....#..#..',
    '.#..#..#.#..#.#...',
    '.#..###...##..####',
    '....#.............',
    '....#.............',
  ]);
});

t.test('scale enlarges each font pixel to a square block', async (t) => {
  const one = renderText('Hi');
  const three = renderText('Hi', 3);
  t.same([three.width, three.height], [one.width * 3, TEXT_LINE_HEIGHT * 3]);
  for (let y = 0; y < three.height; y++) {
    for (let x = 0; x < three.width; x++) {
      if (three.ink[y * three.width + x] !== one.ink[Math.floor(y / 3) * one.width + Math.floor(x / 3)]) {
        t.fail(`pixel (${x}, ${y}) differs from the unscaled bitmap`);
        return;
      }
    }
  }
  t.equal(textWidth('Hi', 3), three.width);
});

t.test("characters the font lacks become '?'; empty text has no width", async (t) => {
  // The font's own fallback for a missing glyph is a filled block (and a logged warning): equality
  // with '?' shows the replacement happens before the font sees the text.
  t.same(rows(renderText('Å\n')), rows(renderText('??')));
  t.same(rows(renderText('😀')), rows(renderText('?')), 'one replacement for one code point');
  t.notSame(rows(renderText('?')), rows(renderText('A')));
  t.same([renderText('').width, renderText('').height], [0, TEXT_LINE_HEIGHT]);
});

t.test('drawText writes the color where the bitmap has ink and clips at the edges', async (t) => {
  const bitmap = renderText('A', 2);
  const image = createImage(bitmap.width + 5, bitmap.height + 4, 3, 255);
  drawText(image, 'A', 3, 2, { scale: 2, color: [200, 10, 20] });
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const inBox = x >= 3 && y >= 2 && x < 3 + bitmap.width && y < 2 + bitmap.height;
      const inked = inBox && bitmap.ink[(y - 2) * bitmap.width + (x - 3)] === 1;
      const pixel = Array.from(image.data.subarray((y * image.width + x) * 3, (y * image.width + x) * 3 + 3));
      if (pixel.join() !== (inked ? '200,10,20' : '255,255,255')) {
        t.fail(`pixel (${x}, ${y}) is ${pixel}`);
        return;
      }
    }
  }
  t.pass('ink exactly where the bitmap has it');
  const small = createImage(4, 4, 1, 255);
  drawText(small, 'WWW', -2, -3);
  t.ok(small.data.some((v) => v === 0), 'partly visible text is drawn');
  drawText(small, 'W', 100, 100);
  drawText(small, 'W', -100, 0);
});

t.test('bad arguments get ArgumentErrors', async (t) => {
  const image = createImage(4, 4, 1);
  t.throws(() => renderText(5 as never), { name: 'ArgumentError', argument: 'text' });
  t.throws(() => renderText('a', 0), { name: 'ArgumentError', argument: 'scale' });
  t.throws(() => renderText('a', 1.5), { name: 'ArgumentError', argument: 'scale' });
  t.throws(() => drawText(image, 'a', 0.5, 0), { name: 'ArgumentError', argument: 'x' });
  t.throws(() => drawText(image, 'a', 0, 0, { color: [0, 0, 0] }), { name: 'ArgumentError', argument: 'options.color' });
  t.throws(() => drawText(image, 'a', 0, 0, { color: [256] }), { name: 'ArgumentError', argument: 'options.color' });
  t.throws(() => drawText({} as never, 'a', 0, 0), { name: 'ArgumentError', argument: 'image' });
});
