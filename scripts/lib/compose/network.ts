/**
 * Compose's network without a Docker engine: every container gets a network namespace of its own
 * with an address on one bridge, and a hosts file (/etc/netns/<ns>/hosts, which `ip netns exec`
 * mounts over /etc/hosts) naming every service, as compose's DNS does. So each container listens on
 * its own ports (four services on :9100, Kafka on :9092), and `kafka:9092` or
 * `http://influxdb:8086` reach the right process. Published ports (127.0.0.1:9094:9094) are TCP
 * forwarders from the host to the container's address, as docker-proxy does. Needs root and iproute2.
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { promisify } from 'node:util';
import type { PortMapping } from './project.ts';

const exec = promisify(execFile);

async function ip(...args: string[]): Promise<void> {
  try {
    await exec('ip', args, { timeout: 30_000 });
  } catch (error) {
    throw new Error(`ip ${args.join(' ')} failed: ${(error as { stderr?: string }).stderr?.trim() || (error as Error).message}`);
  }
}

/** Why this machine cannot make the network, or undefined when it can. */
export async function networkUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'network namespaces need root (run the parity run as root)';
  try {
    await exec('ip', ['netns', 'list'], { timeout: 10_000 });
  } catch (error) {
    return `iproute2's ip netns does not work here: ${(error as Error).message}`;
  }
  return undefined;
}

export interface Network {
  /** The address of a service's container. */
  addressOf(service: string): string;
  /** Spawns argv inside the service's namespace. */
  spawnIn(service: string, argv: readonly string[], options: SpawnOptions): ChildProcess;
  /** Forwards the host's hostIp:hostPort to the service's containerPort. */
  publish(service: string, port: PortMapping): Promise<void>;
  remove(): Promise<void>;
}

/**
 * Creates the bridge and one namespace per service. `id` keeps names apart from other runs (and
 * short: interface names have 15 characters at most).
 */
export async function createNetwork(id: string, services: readonly string[]): Promise<Network> {
  const subnet = 200 + (Number.parseInt(id, 36) % 50);
  const bridge = `tfb${id}`;
  const namespaces = new Map(services.map((service, i) => [service, { ns: `tf${id}-${i}`, address: `10.${subnet}.${Math.floor(i / 250)}.${(i % 250) + 2}`, veth: `tfv${id}${i}` }]));
  const servers: Server[] = [];
  const created: string[] = [];
  const remove = async () => {
    for (const server of servers) server.close();
    for (const { ns } of namespaces.values()) {
      await ip('netns', 'del', ns).catch(() => undefined);
      rmSync(`/etc/netns/${ns}`, { recursive: true, force: true });
    }
    if (created.includes(bridge)) await ip('link', 'del', bridge).catch(() => undefined);
  };
  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    created.push(bridge);
    await ip('addr', 'add', `10.${subnet}.255.1/16`, 'dev', bridge);
    await ip('link', 'set', bridge, 'up');
    const hosts = ['127.0.0.1 localhost', '::1 localhost ip6-localhost ip6-loopback', ...[...namespaces].map(([service, { address }]) => `${address} ${service}`)].join('\n') + '\n';
    for (const { ns, address, veth } of namespaces.values()) {
      await ip('netns', 'add', ns);
      await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('link', 'set', veth, 'master', bridge, 'up');
      await ip('-n', ns, 'addr', 'add', `${address}/16`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('-n', ns, 'route', 'add', 'default', 'via', `10.${subnet}.255.1`);
      mkdirSync(`/etc/netns/${ns}`, { recursive: true });
      writeFileSync(`/etc/netns/${ns}/hosts`, hosts);
    }
  } catch (error) {
    await remove();
    throw error;
  }
  const entry = (service: string) => {
    const found = namespaces.get(service);
    if (found === undefined) throw new Error(`no container named ${service} on this network`);
    return found;
  };
  return {
    addressOf: (service) => entry(service).address,
    // In a UTS namespace of its own too, named after the service (as a container's hostname, which
    // the hosts file maps to its address): the broker resolves its own host name at start.
    spawnIn: (service, argv, options) =>
      spawn('ip', ['netns', 'exec', entry(service).ns, 'unshare', '--uts', '--', 'sh', '-c', 'hostname "$1" && shift && exec "$@"', 'sh', service, ...argv], options),
    publish: async (service, { hostIp, hostPort, containerPort }) => {
      const target = entry(service).address;
      const server = createServer((client) => {
        const upstream = createConnection({ host: target, port: containerPort });
        client.pipe(upstream).pipe(client);
        const close = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', close);
        upstream.on('error', close);
        client.on('close', close);
        upstream.on('close', close);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(hostPort, hostIp, () => resolve());
      });
      servers.push(server);
    },
    remove,
  };
}
