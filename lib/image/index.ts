/** Images: the Image type, tensors to images, PNG output, labelled grids, PSNR and SSIM. */
export { createImage, isImage, scaleImage, MAX_IMAGE_SIDE } from './image.js';
export type { Image, ImageChannels } from './image.js';
export { tensorToImages } from './from-tensor.js';
export { encodePng, writePng } from './png.js';
export { imageGrid } from './grid.js';
export type { ImageGridOptions } from './grid.js';
export { renderText, drawText, textWidth, TEXT_LINE_HEIGHT } from './text.js';
export type { TextBitmap } from './text.js';
export { psnr, ssim } from './metrics.js';
export type { MetricInput, MetricOptions } from './metrics.js';
