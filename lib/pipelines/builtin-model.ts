/**
 * The built-in model shipped with the package: a class-conditional pixel-space DiT trained on
 * Fashion-MNIST (models/fashion-dit, a diffusers DiTPipeline folder; see its README.md).
 */
import { fileURLToPath } from 'node:url';

/** The built-in model's diffusers pipeline folder (lib/ and dist/ both sit two levels below the package root). */
export function builtinModelDir(): string {
  return fileURLToPath(new URL('../../models/fashion-dit', import.meta.url));
}
