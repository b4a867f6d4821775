export * from './schemes.js';
export * from './quantize.js';
