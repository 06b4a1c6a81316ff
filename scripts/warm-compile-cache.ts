/**
 * Fills Node's compile cache (NODE_COMPILE_CACHE) with every service's modules, so that a service
 * starts from it: its TypeScript already stripped, its bytecode compiled. A service that strips a
 * file itself loads the type stripper (a WebAssembly module) for the rest of its life: about 25 MB
 * of RSS more, of the 117 MB an idle order-matcher has (scripts/lib/node-options.ts).
 *
 * Each service is started with a TOPIC_PARTITIONS it refuses: every one checks it once its imports
 * have loaded, and exits 2 having written the cache. Entries are keyed by the file's content, so a
 * changed file is stripped again at the next warm-up (or by the service itself) and nothing stale
 * is ever run. Run by scripts/bootstrap.sh and the Dockerfile.
 *
 *   node scripts/warm-compile-cache.ts        (NODE_COMPILE_CACHE, or the default of node-options.ts)
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { compileCacheDir } from './lib/node-options.ts';
import { REPO } from './lib/repo.ts';

const dir = compileCacheDir(process.env);
const services = readdirSync(join(REPO, 'services')).sort();

const warm = (service: string) =>
  new Promise<void>((resolve) => {
    const child = spawn(process.execPath, [join(REPO, 'services', service, 'src', 'main.ts')], {
      env: { PATH: process.env['PATH'] ?? '', NODE_COMPILE_CACHE: dir, TOPIC_PARTITIONS: '0', LOG_LEVEL: 'fatal' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('exit', (code) => {
      // Not fatal: the service then strips its files itself (and says what is wrong when started).
      if (code !== 2 || !stderr.includes('TOPIC_PARTITIONS')) process.stderr.write(`warm-compile-cache: ${service} did not stop at its configuration check (exit ${code}):\n${stderr}\n`);
      resolve();
    });
  });

// Two at a time: a small machine's cores.
const queue = [...services];
await Promise.all([0, 1].map(async () => {
  for (let service = queue.shift(); service !== undefined; service = queue.shift()) await warm(service);
}));
