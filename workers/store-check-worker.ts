/**
 * The store's check at start (src/store/check.ts), off the main thread: it
 * reads the whole file, which takes seconds on a large decision log.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkStore } from '../src/store/check.js';

parentPort!.postMessage(checkStore((workerData as { storePath: string }).storePath));
