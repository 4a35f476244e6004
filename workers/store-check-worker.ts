/**
 * The store's check at start (src/store/check.ts), in a process of its
 * own: it reads the whole file, which takes seconds on a large decision
 * log, and a stop must end it at once (a thread cannot be stopped inside
 * SQLite's read). The store's path is the first argument; the result goes
 * back over the IPC channel.
 */
import { checkStore } from '../src/store/check.js';

const result = checkStore(process.argv[2]);
process.send!(result, () => process.disconnect());
