/**
 * The gauges an operator watches beside the scoring figures (`/metrics`):
 * the build, the process's memory, the main thread's event-loop delay, the
 * store's files and the room left on the data directory's disk. Read at
 * each scrape (a few syscalls), except the event-loop delay, which is
 * sampled all along and reported over the last finished metrics interval.
 */
import { statfsSync, statSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { packageVersion } from '../paths.js';
import { SCHEMA_VERSION } from '../store/sqlite.js';
import type { Gauge } from './metrics.js';

export interface ProcessGauges {
  gauges(): Gauge[];
  close(): void;
}

/** The size of a file in bytes, 0 when it is not there (the WAL between runs). */
function fileBytes(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function processGauges(o: { dataDir: string; storePath: string; intervalMs: number }): ProcessGauges {
  const version = packageVersion();
  const loop = monitorEventLoopDelay({ resolution: 20 });
  loop.enable();
  let last = { p99: Number.NaN, max: Number.NaN };
  const timer = setInterval(() => {
    last = loop.count > 0 ? { p99: loop.percentile(99) / 1e9, max: loop.max / 1e9 } : { p99: Number.NaN, max: Number.NaN };
    loop.reset();
  }, o.intervalMs);
  timer.unref();
  return {
    gauges(): Gauge[] {
      const memory = process.memoryUsage();
      let free = Number.NaN;
      try {
        const fs = statfsSync(o.dataDir);
        free = fs.bavail * fs.bsize;
      } catch { /* not known on this platform: NaN */ }
      return [
        { name: 'selectivity_build_info', help: 'The engine\'s version and the store schema it writes (value 1).', labels: { version, schema: String(SCHEMA_VERSION), node: process.version }, value: 1 },
        { name: 'selectivity_process_resident_memory_bytes', help: 'Resident memory of the whole process (every thread).', value: memory.rss },
        { name: 'selectivity_main_heap_used_bytes', help: 'V8 heap in use on the main thread (the scoring workers have their own).', value: memory.heapUsed },
        { name: 'selectivity_event_loop_delay_p99_seconds', help: 'The main thread\'s event-loop delay, 99th percentile over the last finished metrics interval (NaN before the first).', value: last.p99 },
        { name: 'selectivity_event_loop_delay_max_seconds', help: 'The main thread\'s longest event-loop delay over the last finished metrics interval (NaN before the first).', value: last.max },
        { name: 'selectivity_store_file_bytes', help: 'Size of the store\'s files: the database and its write-ahead log.', labels: { file: 'db' }, value: fileBytes(o.storePath) },
        { name: 'selectivity_store_file_bytes', help: '', labels: { file: 'wal' }, value: fileBytes(`${o.storePath}-wal`) },
        { name: 'selectivity_data_dir_free_bytes', help: 'Bytes free for this process on the data directory\'s file system (NaN where unknown).', value: free },
      ];
    },
    close() {
      clearInterval(timer);
      loop.disable();
    },
  };
}
