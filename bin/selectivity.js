#!/usr/bin/env node
import { main, stopOnBrokenPipe } from '../dist/src/cli/main.js';

const argv = process.argv.slice(2);
if (argv[0] !== 'serve') process.stdout.on('error', stopOnBrokenPipe);
main(argv).then(
  (code) => { process.exitCode = code; },
  (e) => { console.error(e); process.exitCode = 1; },
);
