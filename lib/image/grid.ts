/**
 * Labelled image grids: cells in rows and columns (in the demo, rows are configurations such as
 * "fp32" or "SVDQuant w4a4", columns are seeds or classes), an optional title above, column labels
 * above the columns and row labels to the left, all on a plain background.
 *
 * Layout (p = padding, every cell slot is the largest scaled cell, widened to its column label):
 *
 *   p | title line (centred)                                | p
 *   p | [row-label column] p | col label | p | col label | p
 *   p | row label           p | cell      | p | cell      | p
 */
import { ArgumentError } from '../errors.js';
import { MAX_IMAGE_SIDE, checkImage, createImage, scaleImage, type Image } from './image.js';
import { TEXT_LINE_HEIGHT, drawText, textWidth } from './text.js';

export interface ImageGridOptions {
  /** Number of rows; `cells` holds rows * cols images, row by row. */
  readonly rows: number;
  readonly cols: number;
  /** One label per row, drawn left of the row, vertically centred. */
  readonly rowLabels?: readonly string[];
  /** One label per column, drawn above the column, centred. */
  readonly colLabels?: readonly string[];
  /** A line drawn centred above everything. */
  readonly title?: string;
  /** Pixels around and between everything (default 4). */
  readonly padding?: number;
  /** Integer enlargement of every cell, nearest neighbour (default 1), so 28x28 samples are legible. */
  readonly scale?: number;
  /** Integer size of the label font: its capitals are 7 * labelScale pixels high (default 2). */
  readonly labelScale?: number;
  /** Gray level of the background (default 255, white); labels are black on light backgrounds, white on dark ones. */
  readonly background?: number;
}

const KNOWN_OPTIONS = new Set(['rows', 'cols', 'rowLabels', 'colLabels', 'title', 'padding', 'scale', 'labelScale', 'background']);

/**
 * One image holding `cells` (row-major, rows * cols of them) with their labels. The result is gray
 * when every cell is gray, RGB otherwise (gray cells are repeated into R, G and B; RGBA cells are
 * blended over the background). Cells may differ in size: each is centred in its slot.
 */
export function imageGrid(cells: readonly Image[], options: ImageGridOptions): Image {
  const o = checkOptions(options);
  if (!Array.isArray(cells)) throw new ArgumentError('cells', 'an array of images', cells);
  if (cells.length !== o.rows * o.cols) {
    throw new ArgumentError('cells', `rows * cols = ${o.rows * o.cols} images (row by row)`, `${cells.length} images`);
  }
  cells.forEach((cell, i) => checkImage(cell, `cells[${i}]`));
  const scaled = cells.map((cell) => scaleImage(cell, o.scale));

  const p = o.padding;
  const lineHeight = TEXT_LINE_HEIGHT * o.labelScale;
  const widest = (values: readonly number[]) => values.reduce((a, b) => Math.max(a, b), 0);
  const cellWidth = widest(scaled.map((cell) => cell.width));
  const cellHeight = widest(scaled.map((cell) => cell.height));
  const colLabelWidth = widest((o.colLabels ?? []).map((label) => textWidth(label, o.labelScale)));
  const rowLabelWidth = widest((o.rowLabels ?? []).map((label) => textWidth(label, o.labelScale)));
  const slotWidth = Math.max(cellWidth, colLabelWidth);
  const titleWidth = o.title === undefined ? 0 : textWidth(o.title, o.labelScale);

  const gridLeft = p + (o.rowLabels === undefined ? 0 : rowLabelWidth + p);
  const titleTop = p;
  const colLabelTop = p + (o.title === undefined ? 0 : lineHeight + p);
  const gridTop = colLabelTop + (o.colLabels === undefined ? 0 : lineHeight + p);
  const width = Math.max(gridLeft + o.cols * (slotWidth + p), titleWidth + 2 * p);
  const height = gridTop + o.rows * (cellHeight + p);

  if (width > MAX_IMAGE_SIDE || height > MAX_IMAGE_SIDE) {
    throw new ArgumentError('options', `a grid at most ${MAX_IMAGE_SIDE} pixels wide and high (fewer cells, a smaller scale or padding)`, `${width}x${height}`);
  }
  const channels = cells.every((cell) => cell.channels === 1) ? 1 : 3;
  const grid = createImage(width, height, channels, o.background);
  const ink = o.background >= 128 ? 0 : 255;
  const text = (label: string, x: number, y: number): void =>
    drawText(grid, label, x, y, { scale: o.labelScale, color: new Array<number>(channels).fill(ink) });

  if (o.title !== undefined) text(o.title, Math.floor((width - titleWidth) / 2), titleTop);
  for (let c = 0; c < o.cols; c++) {
    const slotLeft = gridLeft + c * (slotWidth + p);
    const label = o.colLabels?.[c];
    if (label !== undefined) text(label, slotLeft + Math.floor((slotWidth - textWidth(label, o.labelScale)) / 2), colLabelTop);
    for (let r = 0; r < o.rows; r++) {
      const cell = scaled[r * o.cols + c];
      const slotTop = gridTop + r * (cellHeight + p);
      paste(grid, cell, slotLeft + Math.floor((slotWidth - cell.width) / 2), slotTop + Math.floor((cellHeight - cell.height) / 2), o.background);
    }
  }
  for (let r = 0; r < o.rows; r++) {
    const label = o.rowLabels?.[r];
    if (label !== undefined) text(label, p, gridTop + r * (cellHeight + p) + Math.floor((cellHeight - lineHeight) / 2));
  }
  return grid;
}

/** Copies `cell` into `grid` at (left, top), converting gray to RGB and blending RGBA over `background`. */
function paste(grid: Image, cell: Image, left: number, top: number, background: number): void {
  const gc = grid.channels;
  const cc = cell.channels;
  for (let y = 0; y < cell.height; y++) {
    for (let x = 0; x < cell.width; x++) {
      const src = (y * cell.width + x) * cc;
      const dst = ((top + y) * grid.width + left + x) * gc;
      for (let k = 0; k < gc; k++) {
        const value = cc === 1 ? cell.data[src] : cell.data[src + k];
        grid.data[dst + k] = cc === 4 ? Math.round((value * cell.data[src + 3] + background * (255 - cell.data[src + 3])) / 255) : value;
      }
    }
  }
}

interface ResolvedOptions {
  rows: number;
  cols: number;
  rowLabels: readonly string[] | undefined;
  colLabels: readonly string[] | undefined;
  title: string | undefined;
  padding: number;
  scale: number;
  labelScale: number;
  background: number;
}

function checkOptions(options: ImageGridOptions): ResolvedOptions {
  if (options === null || typeof options !== 'object') throw new ArgumentError('options', 'an object with rows and cols', options);
  for (const key of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(key)) {
      throw new ArgumentError(`options.${key}`, `no such option (known: ${[...KNOWN_OPTIONS].join(', ')})`, (options as unknown as Record<string, unknown>)[key]);
    }
  }
  const int = (key: keyof ImageGridOptions, lo: number, hi: number, fallback?: number): number => {
    const value = options[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) {
      throw new ArgumentError(`options.${key}`, `an integer in [${lo}, ${hi}]`, options[key]);
    }
    return value;
  };
  const rows = int('rows', 1, 4096);
  const cols = int('cols', 1, 4096);
  const labels = (key: 'rowLabels' | 'colLabels', count: number): readonly string[] | undefined => {
    const value = options[key];
    if (value === undefined) return undefined;
    if (!Array.isArray(value) || value.length !== count || !value.every((v) => typeof v === 'string')) {
      throw new ArgumentError(`options.${key}`, `an array of ${count} strings (one per ${key === 'rowLabels' ? 'row' : 'column'})`, value);
    }
    return value;
  };
  if (options.title !== undefined && typeof options.title !== 'string') throw new ArgumentError('options.title', 'a string', options.title);
  return {
    rows,
    cols,
    rowLabels: labels('rowLabels', rows),
    colLabels: labels('colLabels', cols),
    title: options.title,
    padding: int('padding', 0, 1024, 4),
    scale: int('scale', 1, 64, 1),
    labelScale: int('labelScale', 1, 64, 2),
    background: int('background', 0, 255, 255),
  };
}
