/**
 * The built-in model's image classifier (models/fashion-dit/classifier, trained by
 * training/train_builtin_dit.py on the Fashion-MNIST training split; 86.2% test accuracy): a small
 * CNN that says which class a generated image looks like, so sample quality can be scored the way
 * the model card scores it (classifier accuracy on samples).
 *
 * Input [B, 1, 28, 28] in [-1, 1] (the DiT's pixel scale); conv1 3x3 (1 -> 16, padding 1), ReLU,
 * 2x2 max-pool; conv2 3x3 (16 -> 32), ReLU, max-pool; flatten (channel, row, column); fc1 1568 -> 64,
 * ReLU; fc2 64 -> 10 logits.
 */
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { Conv2d, Linear } from '../graph/layers.js';
import { output } from '../graph/functional.js';
import { Module } from '../graph/module.js';
import { loadWeights } from '../models/loader.js';
import { Tensor } from '../tensor.js';
import { builtinModelDir } from './builtin-model.js';

export const CLASSIFIER_FILE = join('classifier', 'classifier.safetensors');

function relu(x: Tensor): Tensor<'f32'> {
  const src = x.to('f32').data;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] > 0 ? src[i] : 0;
  return output(out, x.shape);
}

/** 2x2 max-pool, stride 2, over [B, C, H, W] with even H and W. */
function maxPool2(x: Tensor): Tensor<'f32'> {
  const [b, c, h, w] = x.shape;
  const src = x.to('f32').data;
  const oh = h >> 1, ow = w >> 1;
  const out = new Float32Array(b * c * oh * ow);
  for (let p = 0; p < b * c; p++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const base = p * h * w + 2 * i * w + 2 * j;
        out[(p * oh + i) * ow + j] = Math.max(src[base], src[base + 1], src[base + w], src[base + w + 1]);
      }
    }
  }
  return output(out, [b, c, oh, ow]);
}

export class FashionClassifier extends Module<[Tensor], Tensor> {
  constructor() {
    super();
    this.registerModule('conv1', new Conv2d(1, 16, 3, { padding: 1 }));
    this.registerModule('conv2', new Conv2d(16, 32, 3, { padding: 1 }));
    this.registerModule('fc1', new Linear(32 * 7 * 7, 64));
    this.registerModule('fc2', new Linear(64, 10));
  }

  /** Logits [B, 10] for images [B, 1, 28, 28] in [-1, 1]. */
  override async forward(images: Tensor): Promise<Tensor> {
    if (!(images instanceof Tensor) || images.shape.join() !== `${images.shape[0]},1,28,28`) {
      throw new ArgumentError('images', 'a tensor [B, 1, 28, 28] in [-1, 1]', images instanceof Tensor ? images.toString() : images);
    }
    let x = maxPool2(relu(await this.child('conv1').call(images)));
    x = maxPool2(relu(await this.child('conv2').call(x)));
    x = relu(await this.child('fc1').call(x.reshape([x.shape[0], 32 * 7 * 7])));
    return this.child('fc2').call(x);
  }

  /** The predicted class of each image (argmax of the logits). */
  async predict(images: Tensor): Promise<number[]> {
    const logits = (await this.call(images)).toArray();
    const out: number[] = [];
    for (let i = 0; i < logits.length; i += 10) {
      let best = 0;
      for (let k = 1; k < 10; k++) if (logits[i + k] > logits[i + best]) best = k;
      out.push(best);
    }
    return out;
  }
}

/** The built-in model's classifier with its trained weights. */
export async function loadBuiltinClassifier(): Promise<FashionClassifier> {
  const model = new FashionClassifier();
  await loadWeights(model, [join(builtinModelDir(), CLASSIFIER_FILE)]);
  return model;
}

/** Pixel-pipeline images in [0, 1] back to the classifier's [-1, 1] scale. */
export function unitToSigned(images: Tensor): Tensor<'f32'> {
  const src = images.to('f32').data;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i] * 2 - 1;
  return output(out, images.shape);
}
