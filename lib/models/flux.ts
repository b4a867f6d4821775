/**
 * FluxTransformer2DModel (diffusers models/transformers/transformer_flux.py): FLUX.1. Packed image
 * tokens (flux-latents.ts) and text tokens are embedded by `x_embedder` / `context_embedder`; a
 * timestep (+ guidance) + pooled-text embedding (temb) modulates every block; double-stream blocks
 * (joint attention, text tokens first, separate weights per stream) are followed by single-stream
 * blocks over the concatenated sequence (attention and MLP side by side, one fused output
 * projection); every attention rotates its RMS-normed queries and keys by a rotary embedding of the
 * (text, row, col) position ids; the image tokens get a continuous adaLN output norm.
 *
 * forward({ hidden_states [B, T, in_channels] (packed), encoder_hidden_states [B, Tc,
 * joint_attention_dim], pooled_projections [B, pooled_projection_dim], timestep (in 0..1: the model
 * multiplies by 1000), img_ids [T, 3] or [B, T, 3], txt_ids [Tc, 3] or [B, Tc, 3], guidance? (the
 * guidance scale, [B] or one number; required with guidance_embeds) }) -> { sample [B, T, in_channels] }.
 */
import { ArgumentError } from '../errors.js';
import { Module } from '../graph/module.js';
import { LayerNorm, Linear, ModuleList } from '../graph/layers.js';
import { gatedAdd } from '../graph/elementwise.js';
import { gelu } from '../graph/functional.js';
import { numericValues } from '../graph/embeddings.js';
import { concat, slice, unsqueeze } from '../graph/shape-ops.js';
import { rotaryTable, type RotaryTable } from '../graph/rotary.js';
import { declareReleaseSafe } from '../graph/release.js';
import { Tensor } from '../tensor.js';
import { ConfigReader, type ModelConfig } from './config.js';
import { Attention } from './layers/attention.js';
import { CombinedTimestepGuidanceTextProjEmbeddings, CombinedTimestepTextProjEmbeddings } from './layers/embeddings.js';
import { FeedForward } from './layers/feed-forward.js';
import { gatedFeedForward } from './layers/joint-transformer-block.js';
import { AdaLayerNormContinuous, AdaLayerNormZero, AdaLayerNormZeroSingle } from './layers/normalization.js';
import { checkInput } from './transformer-io.js';

export { packLatents, unpackLatents, imageIds, textIds } from './flux-latents.js';

export interface FluxInputs {
  hidden_states: Tensor;
  encoder_hidden_states: Tensor;
  pooled_projections: Tensor;
  timestep: Tensor | number | number[];
  img_ids: Tensor;
  txt_ids: Tensor;
  guidance?: Tensor | number | number[] | null;
}

/** The double-stream block (FluxTransformerBlock): SD3's MM-DiT block with RMS head norms, rotary positions and text first. */
export class FluxTransformerBlock extends Module {
  constructor(dim: number, heads: number, headDim: number) {
    super();
    this.registerModule('norm1', new AdaLayerNormZero(dim));
    this.registerModule('norm1_context', new AdaLayerNormZero(dim));
    this.registerModule('attn', new Attention({
      queryDim: dim, addedKvProjDim: dim, dimHead: headDim, heads, outDim: dim, contextPreOnly: false, bias: true, qkNorm: 'rms_norm', eps: 1e-6,
    }));
    this.registerModule('norm2', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
    this.registerModule('ff', new FeedForward(dim, { dimOut: dim, activationFn: 'gelu-approximate' }));
    this.registerModule('norm2_context', new LayerNorm(dim, { affine: false, eps: 1e-6 }));
    this.registerModule('ff_context', new FeedForward(dim, { dimOut: dim, activationFn: 'gelu-approximate' }));
  }

  /** Returns [context, image tokens]. */
  override async forward(hiddenStates: Tensor, context: Tensor, temb: Tensor, rotary: RotaryTable): Promise<[Tensor, Tensor]> {
    const [normed, gateMsa, shiftMlp, scaleMlp, gateMlp] = await this.child('norm1').call(hiddenStates, { emb: temb }) as Tensor[];
    const [normedC, cGateMsa, cShiftMlp, cScaleMlp, cGateMlp] = await this.child('norm1_context').call(context, { emb: temb }) as Tensor[];
    const [attnOut, contextAttnOut] = await (this.child('attn') as Attention).joint(normed, normedC, { contextFirst: true, rotary });
    let h: Tensor = await gatedAdd(hiddenStates, unsqueeze(gateMsa, 1), attnOut);
    h = await gatedFeedForward(h, this.child('norm2') as LayerNorm, this.child('ff'), shiftMlp, scaleMlp, gateMlp);
    let c: Tensor = await gatedAdd(context, unsqueeze(cGateMsa, 1), contextAttnOut!);
    c = await gatedFeedForward(c, this.child('norm2_context') as LayerNorm, this.child('ff_context'), cShiftMlp, cScaleMlp, cGateMlp);
    return [c, h];
  }
}

/**
 * The single-stream block (FluxSingleTransformerBlock): one adaLN-Zero norm, then attention (no
 * output projection of its own) and a GELU MLP side by side, concatenated and projected by one
 * `proj_out`, gated into the residual.
 */
export class FluxSingleTransformerBlock extends Module {
  constructor(dim: number, heads: number, headDim: number, mlpRatio = 4) {
    super();
    const mlpDim = Math.trunc(dim * mlpRatio);
    this.registerModule('norm', new AdaLayerNormZeroSingle(dim));
    this.registerModule('proj_mlp', new Linear(dim, mlpDim));
    this.registerModule('proj_out', new Linear(dim + mlpDim, dim));
    this.registerModule('attn', new Attention({ queryDim: dim, dimHead: headDim, heads, outDim: dim, bias: true, qkNorm: 'rms_norm', eps: 1e-6, preOnly: true }));
  }

  override async forward(hiddenStates: Tensor, temb: Tensor, rotary: RotaryTable): Promise<Tensor> {
    const [normed, gate] = await this.child('norm').call(hiddenStates, temb) as Tensor[];
    const mlp = await gelu(await this.child('proj_mlp').call(normed), { approximate: 'tanh' });
    const attn = await this.child('attn').call(normed, { image_rotary_emb: rotary });
    const out = await this.child('proj_out').call(await concat([attn, mlp], 2));
    return gatedAdd(hiddenStates, unsqueeze(gate, 1), out);
  }
}

/** Position ids as [B or 1, T, axes] values; a 2-D [T, axes] tensor is shared by the batch. */
function positionIds(ids: unknown, name: string, axes: number): { values: number[]; batch: number; tokens: number } {
  const { values, shape } = numericValues(ids, `inputs.${name}`);
  if ((shape.length !== 2 && shape.length !== 3) || shape[shape.length - 1] !== axes) {
    throw new ArgumentError(`inputs.${name}`, `position ids of shape [T, ${axes}] or [B, T, ${axes}]`, `shape [${shape.join(', ')}]`);
  }
  return { values, batch: shape.length === 3 ? shape[0] : 1, tokens: shape[shape.length - 2] };
}

/** The ids of the joint sequence, text then image, as diffusers' torch.cat((txt_ids, img_ids), dim=1). */
function jointIds(txt: ReturnType<typeof positionIds>, img: ReturnType<typeof positionIds>, batch: number, axes: number): Tensor {
  const b = txt.batch === 1 && img.batch === 1 ? 1 : batch;
  for (const [ids, name] of [[txt, 'txt_ids'], [img, 'img_ids']] as const) {
    if (ids.batch !== 1 && ids.batch !== batch) throw new ArgumentError(`inputs.${name}`, `ids for 1 or ${batch} samples`, `${ids.batch} samples`);
  }
  const tokens = txt.tokens + img.tokens;
  const out = new Float32Array(b * tokens * axes);
  for (let s = 0; s < b; s++) {
    const t = txt.batch === 1 ? 0 : s, i = img.batch === 1 ? 0 : s;
    out.set(txt.values.slice(t * txt.tokens * axes, (t + 1) * txt.tokens * axes), s * tokens * axes);
    out.set(img.values.slice(i * img.tokens * axes, (i + 1) * img.tokens * axes), (s * tokens + txt.tokens) * axes);
  }
  return Tensor.fromStorage(out, [b, tokens, axes], 'f32');
}

/** Per-sample values (one number is repeated) multiplied by 1000 in float32, as the model does to timestep and guidance. */
function scaledBy1000(x: unknown, name: string, batch: number): number[] {
  const { values } = numericValues(x, `inputs.${name}`);
  if (values.length !== 1 && values.length !== batch) throw new ArgumentError(`inputs.${name}`, `one value or ${batch} (one per sample)`, `${values.length} values`);
  const per = values.length === 1 ? new Array<number>(batch).fill(values[0]) : values;
  return per.map((v) => Math.fround(Math.fround(v) * 1000));
}

export class FluxTransformer2DModel extends Module<[FluxInputs], { sample: Tensor }> {
  readonly config: ModelConfig;
  readonly inChannels: number;
  readonly outChannels: number;
  readonly jointAttentionDim: number;
  readonly pooledProjectionDim: number;
  readonly guidanceEmbeds: boolean;
  readonly axesDimsRope: readonly number[];
  readonly heads: number;

  constructor(config: unknown) {
    super();
    const c = new ConfigReader(config, 'FluxTransformer2DModel');
    const patchSize = c.int('patch_size', 1, 1);
    this.inChannels = c.int('in_channels', 64, 1);
    this.outChannels = c.optionalInt('out_channels', null, 1) ?? this.inChannels;
    const layers = c.int('num_layers', 19, 0);
    const singleLayers = c.int('num_single_layers', 38, 0);
    const headDim = c.int('attention_head_dim', 128, 2);
    this.heads = c.int('num_attention_heads', 24, 1);
    this.jointAttentionDim = c.int('joint_attention_dim', 4096, 1);
    this.pooledProjectionDim = c.int('pooled_projection_dim', 768, 1);
    this.guidanceEmbeds = c.bool('guidance_embeds', false);
    this.axesDimsRope = c.ints('axes_dims_rope', [16, 56, 56], 2);
    this.config = c.resolved();
    if (this.axesDimsRope.some((d) => d % 2 !== 0) || this.axesDimsRope.reduce((a, b) => a + b, 0) !== headDim) {
      throw new ArgumentError('config.axes_dims_rope', `even sizes that add up to attention_head_dim ${headDim}`, this.axesDimsRope);
    }
    const dim = this.heads * headDim;
    this.registerModule('time_text_embed', this.guidanceEmbeds
      ? new CombinedTimestepGuidanceTextProjEmbeddings(dim, this.pooledProjectionDim)
      : new CombinedTimestepTextProjEmbeddings(dim, this.pooledProjectionDim));
    this.registerModule('context_embedder', new Linear(this.jointAttentionDim, dim));
    this.registerModule('x_embedder', new Linear(this.inChannels, dim));
    this.registerModule('transformer_blocks', new ModuleList(Array.from({ length: layers }, () => new FluxTransformerBlock(dim, this.heads, headDim))));
    this.registerModule('single_transformer_blocks', new ModuleList(Array.from({ length: singleLayers }, () => new FluxSingleTransformerBlock(dim, this.heads, headDim))));
    this.registerModule('norm_out', new AdaLayerNormContinuous(dim, dim, { affine: false, eps: 1e-6 }));
    this.registerModule('proj_out', new Linear(dim, patchSize * patchSize * this.outChannels));
  }

  override async forward(inputs: FluxInputs): Promise<{ sample: Tensor }> {
    if (inputs === null || typeof inputs !== 'object') {
      throw new ArgumentError('inputs', 'an object { hidden_states, encoder_hidden_states, pooled_projections, timestep, img_ids, txt_ids, guidance? }', inputs);
    }
    const x = checkInput(inputs, 'hidden_states', [-1, -1, this.inChannels]);
    const [b, tokens] = x.shape;
    const context = checkInput(inputs, 'encoder_hidden_states', [b, -1, this.jointAttentionDim]);
    const pooled = checkInput(inputs, 'pooled_projections', [b, this.pooledProjectionDim]);
    const axes = this.axesDimsRope.length;
    const img = positionIds(inputs.img_ids, 'img_ids', axes);
    const txt = positionIds(inputs.txt_ids, 'txt_ids', axes);
    if (img.tokens !== tokens) throw new ArgumentError('inputs.img_ids', `one id row per image token (${tokens})`, `${img.tokens} rows`);
    if (txt.tokens !== context.shape[1]) throw new ArgumentError('inputs.txt_ids', `one id row per text token (${context.shape[1]})`, `${txt.tokens} rows`);
    if (this.guidanceEmbeds && inputs.guidance == null) throw new ArgumentError('inputs.guidance', 'the guidance scale (the config sets guidance_embeds)', inputs.guidance);
    const timestep = scaledBy1000(inputs.timestep, 'timestep', b);

    let h = await this.child('x_embedder').call(x);
    const temb = this.guidanceEmbeds
      ? await this.child('time_text_embed').call(timestep, scaledBy1000(inputs.guidance, 'guidance', b), pooled)
      : await this.child('time_text_embed').call(timestep, pooled);
    let c = await this.child('context_embedder').call(context);
    const rotary = rotaryTable(jointIds(txt, img, b, axes), this.axesDimsRope);

    const doubles = this.child('transformer_blocks') as ModuleList<FluxTransformerBlock>;
    [c, h] = await doubles.chain<[Tensor, Tensor]>([c, h], (block, [ctx, img]) => block.call(img, ctx, temb, rotary) as Promise<[Tensor, Tensor]>);
    const textTokens = c.shape[1];
    let joint = await concat([c, h], 1);
    const singles = this.child('single_transformer_blocks') as ModuleList<FluxSingleTransformerBlock>;
    joint = await singles.chain(joint, (block, state) => block.call(state, temb, rotary));
    h = await slice(joint, 1, textTokens);
    h = await this.child('norm_out').call(h, temb);
    return { sample: await this.child('proj_out').call(h) };
  }
}
for (const cls of [FluxTransformerBlock, FluxSingleTransformerBlock, FluxTransformer2DModel]) declareReleaseSafe(cls);
