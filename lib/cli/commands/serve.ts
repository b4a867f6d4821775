/** `svdquant serve`: the HTTP image-generation service (lib/serve), until SIGTERM/SIGINT. */

import { SERVE_DEFAULTS, startServer } from '../../serve/server.js';
import { onShutdownSignal } from '../../serve/shutdown.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { intOption } from '../options.js';
import { backendOption } from '../serve-options.js';

const HELP = `Usage: svdquant serve [--model CHECKPOINT|DIR] [--port N] [--host ADDR] [--max-batch N]
                      [--max-queue N] [--batch-window-ms N] [--no-batching] [--timeout-ms N]
                      [--body-limit BYTES] [--shutdown-timeout-ms N] [--queue redis://HOST:PORT]

Serve image generation over HTTP: POST /v1/images, GET /v1/jobs/:id (with --queue), GET /healthz,
GET /readyz, GET /metrics (Prometheus). Concurrent requests with the same steps and guidance that
arrive within the batch window share one forward per step. SIGTERM or SIGINT stops accepting
requests, finishes (or past the deadline cancels) the work in hand, and exits 0.

Options:
  --model PATH             a diffusers DiTPipeline folder or an svdquant checkpoint of its denoiser
                           (default: the built-in Fashion-MNIST model), or a PixArtSigmaPipeline,
                           StableDiffusion3Pipeline or FluxPipeline folder (requests then send
                           prompt embeddings)
  --scheduler DIR          for a checkpoint: the pipeline folder with the scheduler and class names
                           (default: the built-in model's)
  --backend B              where a quantized checkpoint's layers run: auto (default: cuda, hip,
                           else cpu), cpu, cuda, hip, or reference (the TypeScript layers)
  --host ADDR              address to listen on (default ${SERVE_DEFAULTS.host})
  --port N                 port (default ${SERVE_DEFAULTS.port}; 0: any free port)
  --max-batch N            most images per forward and per request (default ${SERVE_DEFAULTS.maxBatch})
  --max-queue N            most waiting requests; more get 429 with Retry-After (default ${SERVE_DEFAULTS.maxQueue})
  --batch-window-ms N      how long a request waits for others to batch with (default ${SERVE_DEFAULTS.batchWindowMs})
  --no-batching            run every request alone
  --timeout-ms N           per-request timeout, waiting included; 0: none (default ${SERVE_DEFAULTS.timeoutMs})
  --body-limit BYTES       largest request body (default ${SERVE_DEFAULTS.bodyLimit}; ${SERVE_DEFAULTS.textBodyLimit} for a
                           text-conditioned model, whose requests carry prompt embeddings)
  --shutdown-timeout-ms N  how long a shutdown waits for the work in hand (default 30000)
  --queue URL              put jobs on this Redis (BullMQ) queue for 'svdquant worker's instead of
                           generating here; --model then only names the classes and size (a
                           text model is loaded, to check embedding shapes before queueing)
  --queue-name NAME        the BullMQ queue (default svdquant-images)
  -h, --help               show this help
`;

export const serveCommand: CliCommand = {
  name: 'serve',
  summary: 'serve image generation over HTTP with dynamic batching and metrics (or in front of workers over Redis)',
  help: HELP,
  examples: ['svdquant serve --port 8080', 'svdquant serve --queue redis://127.0.0.1:6379 --port 8080'],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('serve', args, {
      model: { type: 'string' },
      scheduler: { type: 'string' },
      backend: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      'max-batch': { type: 'string' },
      'max-queue': { type: 'string' },
      'batch-window-ms': { type: 'string' },
      'no-batching': { type: 'boolean' },
      'timeout-ms': { type: 'string' },
      'body-limit': { type: 'string' },
      'shutdown-timeout-ms': { type: 'string' },
      queue: { type: 'string' },
      'queue-name': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length !== 0) throw new UsageError(`serve: expected no arguments, got ${JSON.stringify(positionals[0])} (see 'svdquant serve --help')`);
    const shutdownMs = intOption('serve', 'shutdown-timeout-ms', values['shutdown-timeout-ms'], 30_000, 0, 3_600_000);
    const maxBatch = intOption('serve', 'max-batch', values['max-batch'], SERVE_DEFAULTS.maxBatch, 1, 64);
    const server = await startServer({
      model: values.model as string | undefined,
      scheduler: values.scheduler as string | undefined,
      backend: backendOption('serve', values.backend),
      queue: values.queue as string | undefined,
      queueName: values['queue-name'] as string | undefined,
      host: (values.host as string | undefined) ?? SERVE_DEFAULTS.host,
      port: intOption('serve', 'port', values.port, SERVE_DEFAULTS.port, 0, 65535),
      maxBatch,
      maxQueue: intOption('serve', 'max-queue', values['max-queue'], SERVE_DEFAULTS.maxQueue, 1, 1_000_000),
      batchWindowMs: intOption('serve', 'batch-window-ms', values['batch-window-ms'], SERVE_DEFAULTS.batchWindowMs, 0, 60_000),
      batching: values['no-batching'] !== true,
      timeoutMs: intOption('serve', 'timeout-ms', values['timeout-ms'], SERVE_DEFAULTS.timeoutMs, 0, 86_400_000),
      bodyLimit: values['body-limit'] === undefined ? undefined : intOption('serve', 'body-limit', values['body-limit'], SERVE_DEFAULTS.bodyLimit, 1024, 1 << 30),
    });
    const mode = server.service.kind === 'redis' ? `queue ${values.queue as string}` : values['no-batching'] === true ? 'batching off' : `max batch ${maxBatch}`;
    io.stdout(`svdquant serve: listening on ${server.url} (model ${server.model.name}${server.model.backend !== undefined ? `, backend ${server.model.backend}` : ''}; ${mode})\n`);
    const signal = await onShutdownSignal(async (s) => {
      io.stdout(`svdquant serve: ${s}: shutting down (deadline ${shutdownMs} ms)\n`);
      await server.close(shutdownMs);
    });
    io.stdout(`svdquant serve: stopped after ${signal}\n`);
    return 0;
  },
};
