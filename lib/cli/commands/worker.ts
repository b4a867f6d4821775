/** `svdquant worker`: process image jobs from a Redis (BullMQ) queue fed by `svdquant serve --queue`. */

import { createWorkerMetrics } from '../../serve/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../serve/metrics-server.js';
import { loadServeModel } from '../../serve/model.js';
import { onShutdownSignal } from '../../serve/shutdown.js';
import { startImageWorker } from '../../serve/worker.js';
import { SERVE_DEFAULTS } from '../../serve/server.js';
import { UsageError, parseCommandArgs, type CliCommand, type CliIo } from '../command.js';
import { intOption } from '../options.js';
import { backendOption } from '../serve-options.js';

const HELP = `Usage: svdquant worker --queue redis://HOST:PORT [--model CHECKPOINT|DIR] [--max-batch N]
                       [--batch-window-ms N] [--lock-duration-ms N] [--stalled-interval-ms N]
                       [--shutdown-timeout-ms N] [--metrics-port N [--metrics-host ADDR]]

Take image jobs from the queue that 'svdquant serve --queue' fills, generate them (up to --max-batch
jobs at a time, batched as the server batches), and store the PNGs as the jobs' results. Run any
number of workers on any machines that reach the Redis server. A worker that dies mid-job loses
nothing: its job's lock expires and another worker runs the job. SIGTERM or SIGINT finishes the jobs
in hand (past the deadline it lets them go to other workers) and exits 0. A job cancelled by the
front end (its client went away) leaves this worker's batch at the next step.

Options:
  --queue URL               the Redis server (redis://[user:password@]host[:port][/db])
  --queue-name NAME         the BullMQ queue (default svdquant-images)
  --model PATH              as for 'svdquant serve' (default: the built-in model)
  --scheduler DIR           for a checkpoint: the pipeline folder with the scheduler and class names
  --backend B               auto (default), cpu, cuda, hip or reference, as for 'svdquant serve'
  --max-batch N             most jobs (images) in hand and per forward (default ${SERVE_DEFAULTS.maxBatch})
  --batch-window-ms N       how long a job waits for others to batch with (default ${SERVE_DEFAULTS.batchWindowMs})
  --lock-duration-ms N      a job's lock without renewal: a dead worker's jobs move on after about
                            this (default 30000)
  --stalled-interval-ms N   how often to look for the stalled jobs of dead workers (default 30000)
  --shutdown-timeout-ms N   how long a shutdown waits for the jobs in hand (default 30000)
  --metrics-port N          serve Prometheus metrics (jobs by outcome, job latencies, batch sizes,
                            memory) at http://HOST:N/metrics (0: any free port; default: none)
  --metrics-host ADDR       address of the metrics endpoint (default 127.0.0.1)
  -h, --help                show this help
`;

export const workerCommand: CliCommand = {
  name: 'worker',
  summary: 'process image jobs from a Redis queue filled by `svdquant serve --queue`',
  help: HELP,
  examples: ['svdquant worker --queue redis://127.0.0.1:6379'],
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseCommandArgs('worker', args, {
      queue: { type: 'string' },
      'queue-name': { type: 'string' },
      model: { type: 'string' },
      scheduler: { type: 'string' },
      backend: { type: 'string' },
      'max-batch': { type: 'string' },
      'batch-window-ms': { type: 'string' },
      'lock-duration-ms': { type: 'string' },
      'stalled-interval-ms': { type: 'string' },
      'shutdown-timeout-ms': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help === true) {
      io.stdout(HELP);
      return 0;
    }
    if (positionals.length !== 0) throw new UsageError(`worker: expected no arguments, got ${JSON.stringify(positionals[0])} (see 'svdquant worker --help')`);
    if (values.queue === undefined) throw new UsageError("worker: --queue redis://HOST:PORT is required (see 'svdquant worker --help')");
    const shutdownMs = intOption('worker', 'shutdown-timeout-ms', values['shutdown-timeout-ms'], 30_000, 0, 3_600_000);
    const lockDurationMs = intOption('worker', 'lock-duration-ms', values['lock-duration-ms'], 30_000, 100, 3_600_000);
    const stalledIntervalMs = intOption('worker', 'stalled-interval-ms', values['stalled-interval-ms'], 30_000, 100, 3_600_000);
    if (values['metrics-host'] !== undefined && values['metrics-port'] === undefined) throw new UsageError("worker: --metrics-host needs --metrics-port (see 'svdquant worker --help')");
    const metricsPort = values['metrics-port'] === undefined ? null : intOption('worker', 'metrics-port', values['metrics-port'], 0, 0, 65535);
    const maxBatch = intOption('worker', 'max-batch', values['max-batch'], SERVE_DEFAULTS.maxBatch, 1, 64);
    const metrics = metricsPort === null ? undefined : createWorkerMetrics({ maxBatch });
    const { pipeline, info } = await loadServeModel({
      model: values.model as string | undefined,
      scheduler: values.scheduler as string | undefined,
      backend: backendOption('worker', values.backend),
    });
    const worker = await startImageWorker({
      url: values.queue as string,
      queueName: values['queue-name'] as string | undefined,
      pipeline,
      model: info,
      maxBatch,
      batchWindowMs: intOption('worker', 'batch-window-ms', values['batch-window-ms'], SERVE_DEFAULTS.batchWindowMs, 0, 60_000),
      lockDurationMs,
      stalledIntervalMs,
      ...(metrics !== undefined ? { metrics } : {}),
      onJob: (event) => io.stdout(`svdquant worker: job ${event.id} ${event.state}${event.reason !== undefined ? `: ${event.reason}` : ''}\n`),
    });
    let metricsServer: MetricsServer | null = null;
    if (metrics !== undefined && metricsPort !== null) {
      try {
        metricsServer = await startMetricsServer(metrics.registry, { host: (values['metrics-host'] as string | undefined) ?? SERVE_DEFAULTS.host, port: metricsPort });
      } catch (error) {
        await worker.close(0);
        throw error;
      }
      io.stdout(`svdquant worker: metrics on ${metricsServer.url}/metrics\n`);
    }
    io.stdout(`svdquant worker: ${worker.id} ready (model ${info.name}, backend ${info.backend ?? 'reference'}; queue ${values.queue as string})\n`);
    const signal = await onShutdownSignal(async (s) => {
      io.stdout(`svdquant worker: ${s}: shutting down (deadline ${shutdownMs} ms)\n`);
      await worker.close(shutdownMs);
      await metricsServer?.close();
    });
    io.stdout(`svdquant worker: stopped after ${signal}\n`);
    return 0;
  },
};
