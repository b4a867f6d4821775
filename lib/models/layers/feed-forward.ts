/**
 * diffusers' feed-forward (models/attention.py FeedForward, models/activations.py GELU): `net` is
 * [act_fn (a projection with its activation), Dropout, Linear], so the keys are `ff.net.0.proj` and
 * `ff.net.2`, as in the checkpoints.
 */
import { ArgumentError } from '../../errors.js';
import { Module } from '../../graph/module.js';
import { Dropout, Linear, ModuleList } from '../../graph/layers.js';
import { gelu } from '../../graph/functional.js';
import { declareReleaseSafe } from '../../graph/release.js';
import type { Tensor } from '../../tensor.js';

/** A Linear `proj` followed by GELU (diffusers activations.GELU; 'tanh' for activation_fn "gelu-approximate"). */
export class GELUProjection extends Module {
  constructor(dimIn: number, dimOut: number, readonly approximate: 'none' | 'tanh' = 'none', bias = true) {
    super();
    this.registerModule('proj', new Linear(dimIn, dimOut, { bias }));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    return gelu(await this.child('proj').call(x), { approximate: this.approximate });
  }
}

export type FeedForwardActivation = 'gelu' | 'gelu-approximate';
export const FEED_FORWARD_ACTIVATIONS: readonly FeedForwardActivation[] = ['gelu', 'gelu-approximate'];

export interface FeedForwardOptions {
  dimOut?: number;
  mult?: number;
  innerDim?: number | null;
  activationFn?: FeedForwardActivation;
  bias?: boolean;
}

export class FeedForward extends Module {
  constructor(dim: number, o: FeedForwardOptions = {}) {
    super();
    const inner = o.innerDim ?? Math.trunc(dim * (o.mult ?? 4));
    const act = o.activationFn ?? 'gelu';
    if (!FEED_FORWARD_ACTIVATIONS.includes(act)) throw new ArgumentError('activationFn', `one of ${FEED_FORWARD_ACTIVATIONS.join(', ')}`, act);
    const bias = o.bias ?? true;
    this.registerModule('net', new ModuleList<Module>([
      new GELUProjection(dim, inner, act === 'gelu-approximate' ? 'tanh' : 'none', bias),
      new Dropout(),
      new Linear(inner, o.dimOut ?? dim, { bias }),
    ]));
  }

  override async forward(x: Tensor): Promise<Tensor> {
    return (this.child('net') as ModuleList).chain(x, (m, h) => m.call(h));
  }
}

for (const cls of [GELUProjection, FeedForward]) declareReleaseSafe(cls);
