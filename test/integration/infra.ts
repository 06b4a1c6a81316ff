/** Control of the suite's own local broker and InfluxDB (started by scripts/infra). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO } from '../../scripts/lib/processes.ts';

export { REPO };

const exec = promisify(execFile);

export type InfraMode = 'env' | 'containers' | 'local';

/** Ports apart from the defaults, so the suite never touches a broker or InfluxDB someone runs for real. */
export const KAFKA_TEST_PORT = Number(process.env['KAFKA_TEST_PORT'] ?? 19092);
export const INFLUX_TEST_PORT = Number(process.env['INFLUX_TEST_PORT'] ?? 18086);

export async function runInfraScript(which: 'kafka' | 'influx', action: 'start' | 'stop', env: Record<string, string> = {}): Promise<string> {
  const { stdout, stderr } = await exec('bash', [`${REPO}/scripts/infra/${which}.sh`, action], {
    env: {
      ...process.env,
      KAFKA_PORT: String(KAFKA_TEST_PORT),
      KAFKA_CONTROLLER_PORT: String(KAFKA_TEST_PORT + 1),
      INFLUX_PORT: String(INFLUX_TEST_PORT),
      INFLUX_RPC_PORT: String(INFLUX_TEST_PORT + 2),
      ...env,
    },
    timeout: 600_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  return `${stdout}${stderr}`;
}
