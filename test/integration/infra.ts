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

export async function runInfraScript(which: 'kafka' | 'influx', action: 'start' | 'stop' | 'credentials' | 'classpath' | 'build', env: Record<string, string> = {}): Promise<string> {
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
  // start and stop: their log; the others print a path.
  return action === 'start' || action === 'stop' ? `${stdout}${stderr}` : stdout.trim();
}

/** The users of an InfluxDB: an admin, and a user with rights on its database only (as compose makes them). */
export interface InfluxCredentials {
  readonly adminUser: string;
  readonly adminPassword: string;
  readonly username: string;
  readonly password: string;
}

/** Reads KEY='value' lines as scripts/infra/influx.sh writes them. */
export function parseCredentials(text: string): InfluxCredentials {
  const values = new Map<string, string>();
  for (const line of text.split('\n')) {
    const match = /^([A-Z_]+)='(.*)'$/.exec(line);
    if (match !== null) values.set(match[1]!, match[2]!.replace(/'\\''/g, "'"));
  }
  const get = (name: string) => {
    const value = values.get(name);
    if (value === undefined) throw new Error(`${name} missing from the InfluxDB credentials file`);
    return value;
  };
  return { adminUser: get('INFLUX_ADMIN_USER'), adminPassword: get('INFLUX_ADMIN_PASSWORD'), username: get('INFLUX_USERNAME'), password: get('INFLUX_PASSWORD') };
}
