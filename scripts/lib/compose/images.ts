/**
 * What each image of docker-compose.yml does with a container's command and environment, done on
 * this machine with the same programs:
 * - the project image (Dockerfile): its ENV, WORKDIR, ENTRYPOINT, CMD and HEALTHCHECK read from
 *   the Dockerfile; Node 24 runs the sources of this checkout (the image's /app);
 * - apache/kafka: its start script's steps and kafka.docker.KafkaDockerWrapper from the broker's
 *   own jars (the version the image ships), then the broker on the server.properties that wrote;
 * - influxdb:1.11: its entrypoint and first-start init, with influxd and influx of the version the
 *   image ships.
 * Grafana and Kafka UI have no counterpart here (their provisioning is checked statically).
 *
 * Paths: a container's image paths (/opt/kafka/..., /etc/influxdb/...) live under a directory of
 * its own, and a path inside a mounted volume maps to the volume's directory: in the environment
 * values and the files the emulation writes. Those mappings are the only changes to what compose gives.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Healthcheck, ServiceConfig, VolumeMount } from './project.ts';
import { durationMs } from './project.ts';

const HERE = dirname(new URL(import.meta.url).pathname);

/** Where the programs the images ship are on this machine. */
export interface Toolchain {
  /** The broker's jars (Apache Kafka, the image's version). */
  readonly kafkaClasspath: string;
  /** influxd and influx (the image's version). */
  readonly influxd: string;
  readonly influx: string;
  /** Node (the project image's version). */
  readonly node: string;
}

export interface ProcessSpec {
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  readonly cwd: string;
}

export interface Emulation {
  /** Steps that must exit 0 before the main process (an image's own set-up), in order. */
  readonly setup: readonly ProcessSpec[];
  /** Checks after the set-up (what it wrote); a thrown error stops the container from starting. */
  readonly check?: () => void;
  readonly main: ProcessSpec;
  /** The image's HEALTHCHECK, used when compose sets none. */
  readonly imageHealthcheck?: Healthcheck;
  /** A health-check shell command with image paths mapped to this machine's. */
  mapCommand(command: string): string;
}

export interface ContainerContext {
  readonly service: ServiceConfig;
  /** The container's own directory (its image paths live under it). */
  readonly root: string;
  /** Each volume's directory on this machine, by name. */
  readonly volumeDir: (volume: string) => string;
  readonly repo: string;
  readonly toolchain: Toolchain;
}

export class UnsupportedImage extends Error {
  override readonly name = 'UnsupportedImage';
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Maps container paths inside mounted volumes to their directories on this machine. */
function volumePaths(context: ContainerContext): (value: string) => string {
  const mounts = context.service.volumes
    .filter((m): m is VolumeMount => m.kind === 'volume')
    .map((m) => ({ target: m.target.replace(/\/$/, ''), dir: context.volumeDir(m.source) }))
    .sort((a, b) => b.target.length - a.target.length);
  return (value) => {
    for (const { target, dir } of mounts) {
      if (value === target || value.startsWith(`${target}/`)) return dir + value.slice(target.length);
    }
    return value;
  };
}

/** A comma-separated list of paths (log.dirs) mapped entry by entry. */
const mapList = (map: (v: string) => string) => (value: string) => value.split(',').map(map).join(',');

/** The volume directories on this machine, for checks of where data goes. */
export function volumeDirectories(context: ContainerContext): string[] {
  return context.service.volumes.filter((m) => m.kind === 'volume').map((m) => context.volumeDir(m.source));
}

// --- the project image -------------------------------------------------------------------------

interface DockerfileStage {
  readonly env: Record<string, string>;
  readonly workdir: string;
  readonly entrypoint: string[];
  readonly cmd: string[];
  readonly healthcheck?: Healthcheck;
}

const execForm = (text: string): string[] | undefined => {
  const trimmed = text.trim();
  return trimmed.startsWith('[') ? (JSON.parse(trimmed) as string[]) : undefined;
};

/** The final stage of a Dockerfile: what a container of the image starts with. */
export function readDockerfile(text: string): DockerfileStage {
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const last = instructions.map((line) => /^FROM\s/i.test(line)).lastIndexOf(true);
  const stage = { env: {} as Record<string, string>, workdir: '/', entrypoint: [] as string[], cmd: [] as string[], healthcheck: undefined as Healthcheck | undefined };
  for (const line of instructions.slice(last + 1)) {
    const [, keyword, rest] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    switch (keyword?.toUpperCase()) {
      case 'ENV':
        for (const [, k, v] of rest!.matchAll(/(\w+)=("[^"]*"|\S+)/g)) stage.env[k!] = v!.replace(/^"|"$/g, '');
        break;
      case 'WORKDIR':
        stage.workdir = rest!.trim();
        break;
      case 'ENTRYPOINT':
        stage.entrypoint = execForm(rest!) ?? ['/bin/sh', '-c', rest!];
        stage.cmd = [];
        break;
      case 'CMD':
        stage.cmd = execForm(rest!) ?? ['/bin/sh', '-c', rest!];
        break;
      case 'HEALTHCHECK': {
        const flags = Object.fromEntries([...rest!.matchAll(/--([\w-]+)=(\S+)/g)].map(([, k, v]) => [k!, v!]));
        const command = rest!.replace(/--[\w-]+=\S+\s*/g, '').replace(/^CMD\s+/, '');
        if (/^NONE\b/.test(command)) stage.healthcheck = { disable: true };
        else {
          const timing = { intervalMs: durationMs(flags['interval']), timeoutMs: durationMs(flags['timeout']), startPeriodMs: durationMs(flags['start-period']) };
          stage.healthcheck = {
            disable: false,
            test: execForm(command) === undefined ? ['CMD-SHELL', command] : ['CMD', ...execForm(command)!],
            ...Object.fromEntries(Object.entries(timing).filter(([, v]) => v !== undefined)),
            ...(flags['retries'] === undefined ? {} : { retries: Number(flags['retries']) }),
          };
        }
        break;
      }
      default:
        break;
    }
  }
  return stage.healthcheck === undefined ? { env: stage.env, workdir: stage.workdir, entrypoint: stage.entrypoint, cmd: stage.cmd } : (stage as DockerfileStage);
}

function projectImage(context: ContainerContext): Emulation {
  const stage = readDockerfile(readFileSync(join(context.repo, 'Dockerfile'), 'utf8'));
  const { service, toolchain, repo } = context;
  // compose: entrypoint replaces the image's (and drops its CMD); command replaces CMD.
  const entrypoint = service.entrypoint ?? stage.entrypoint;
  const command = service.command ?? (service.entrypoint === undefined ? stage.cmd : []);
  const argv = [...entrypoint, ...command].map((arg, i) => (i === 0 && arg === 'node' ? toolchain.node : arg));
  const nodeDir = dirname(toolchain.node);
  const toHost = volumePaths(context);
  const env: Record<string, string> = { PATH: `${nodeDir}:${BASE_PATH}`, HOME: join(context.root, 'home'), HOSTNAME: service.name, ...stage.env };
  for (const [key, value] of Object.entries(service.environment)) env[key] = toHost(value);
  // The image's /app is this checkout (the Dockerfile copies its packages, services and scripts there).
  const cwd = stage.workdir === '/app' ? repo : stage.workdir;
  return {
    setup: [],
    main: { argv, env, cwd },
    ...(stage.healthcheck === undefined ? {} : { imageHealthcheck: stage.healthcheck }),
    mapCommand: (command) => command,
  };
}

// --- apache/kafka --------------------------------------------------------------------------------

/** The image's /etc/kafka/docker: its default server.properties and log4j2 files. */
function writeKafkaImageDefaults(root: string): void {
  const defaults = join(root, 'etc/kafka/docker');
  for (const dir of [defaults, join(root, 'mnt/shared/config'), join(root, 'opt/kafka/config'), join(root, 'opt/kafka/logs'), join(root, 'opt/kafka/bin')]) mkdirSync(dir, { recursive: true });
  // The image's docker/server.properties: used only when no KAFKA_* variable is set.
  writeFileSync(
    join(defaults, 'server.properties'),
    [
      'process.roles=broker,controller',
      'node.id=1',
      'controller.quorum.voters=1@localhost:9093',
      'listeners=PLAINTEXT://:9092,CONTROLLER://:9093',
      'advertised.listeners=PLAINTEXT://localhost:9092',
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'log.dirs=/tmp/kraft-combined-logs',
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'share.coordinator.state.topic.replication.factor=1',
      'share.coordinator.state.topic.min.isr=1',
      '',
    ].join('\n'),
  );
  // Console only (the distribution's files also write to files under kafka.logs.dir).
  const log4j = (level: string) =>
    ['Configuration:', '  Appenders:', '    Console:', '      name: STDOUT', '      PatternLayout:', '        pattern: "[%d] %p %m (%c)%n"', '  Loggers:', '    Root:', `      level: ${level}`, '      AppenderRef:', '        - ref: STDOUT', ''].join('\n');
  writeFileSync(join(defaults, 'log4j2.yaml'), log4j('INFO'));
  writeFileSync(join(defaults, 'tools-log4j2.yaml'), log4j('WARN'));
}

/** The tools of the image's /opt/kafka/bin that compose's health check calls, on the broker's jars. */
const KAFKA_TOOLS: Record<string, string> = {
  'kafka-broker-api-versions.sh': 'org.apache.kafka.tools.BrokerApiVersionsCommand',
  'kafka-topics.sh': 'org.apache.kafka.tools.TopicCommand',
};

function kafkaImage(context: ContainerContext): Emulation {
  const { root, service, toolchain } = context;
  writeKafkaImageDefaults(root);
  for (const [tool, mainClass] of Object.entries(KAFKA_TOOLS)) {
    const path = join(root, 'opt/kafka/bin', tool);
    writeFileSync(path, `#!/bin/sh\nexec java -Xmx128m -Dlog4j2.configurationFile="${join(root, 'opt/kafka/config/tools-log4j2.yaml')}" -cp "${toolchain.kafkaClasspath}" ${mainClass} "$@"\n`);
    chmodSync(path, 0o755);
  }
  const toHost = volumePaths(context);
  const env: Record<string, string> = { PATH: BASE_PATH, HOME: join(root, 'home/appuser'), HOSTNAME: service.name };
  for (const [key, value] of Object.entries(service.environment)) env[key] = key === 'KAFKA_LOG_DIRS' || key === 'KAFKA_LOG_DIR' || key === 'KAFKA_METADATA_LOG_DIR' ? mapList(toHost)(value) : toHost(value);
  const config = join(root, 'opt/kafka/config/server.properties');
  const heap = env['KAFKA_HEAP_OPTS'] ?? '-Xmx1G -Xms1G';
  const performance = env['KAFKA_JVM_PERFORMANCE_OPTS'] ?? '-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -Djava.awt.headless=true';
  const split = (s: string) => s.split(/\s+/).filter((part) => part !== '');
  return {
    setup: [{ argv: ['bash', join(HERE, 'images/kafka-setup.sh')], env: { ...env, TF_KAFKA_CLASSPATH: toolchain.kafkaClasspath, TF_ROOT: root }, cwd: root }],
    check: () => {
      const properties = new Map(
        readFileSync(config, 'utf8')
          .split('\n')
          .map((line) => /^([\w.-]+)=(.*)$/.exec(line.trim()))
          .filter((m): m is RegExpExecArray => m !== null)
          .map((m) => [m[1]!, m[2]!]),
      );
      const volumes = volumeDirectories(context);
      const inVolume = (dir: string) => volumes.some((v) => dir === v || dir.startsWith(`${v}/`));
      const logDirs = (properties.get('log.dirs') ?? properties.get('log.dir') ?? '/tmp/kafka-logs').split(',');
      const metadataDir = properties.get('metadata.log.dir');
      for (const dir of [...logDirs, ...(metadataDir === undefined ? [] : [metadataDir])]) {
        if (!inVolume(dir)) {
          const mounts = service.volumes.map((m) => `${m.source}:${m.target}`).join(', ') || 'none';
          throw new Error(
            `the broker's log dir ${dir} (server.properties as the image writes it from the KAFKA_* variables${properties.has('log.dirs') ? '' : "; log.dirs is unset, so it is Kafka's default"}) ` +
              `is not inside a volume (mounted: ${mounts}): topics and committed offsets would be lost whenever the container is recreated. Set KAFKA_LOG_DIRS to a path inside the volume.`,
          );
        }
      }
    },
    main: {
      argv: [
        'java',
        ...split(heap),
        ...split(performance),
        ...split(env['KAFKA_OPTS'] ?? ''),
        `-Dlog4j2.configurationFile=${env['KAFKA_LOG4J_OPTS']?.replace(/^-Dlog4j2\.configurationFile=/, '') ?? join(root, 'opt/kafka/config/log4j2.yaml')}`,
        `-Dkafka.logs.dir=${join(root, 'opt/kafka/logs')}`,
        '-cp',
        toolchain.kafkaClasspath,
        'kafka.Kafka',
        config,
      ],
      env,
      cwd: root,
    },
    mapCommand: (command) => command.replaceAll('/opt/kafka/', `${join(root, 'opt/kafka')}/`),
  };
}

// --- influxdb ------------------------------------------------------------------------------------

function influxdbImage(context: ContainerContext): Emulation {
  const { root, service, toolchain } = context;
  const toHost = volumePaths(context);
  const bin = join(root, 'usr/bin');
  mkdirSync(join(root, 'etc/influxdb'), { recursive: true });
  mkdirSync(bin, { recursive: true });
  for (const [name, target] of [['influxd', toolchain.influxd], ['influx', toolchain.influx]] as const) {
    writeFileSync(join(bin, name), `#!/bin/sh\nexec "${target}" "$@"\n`);
    chmodSync(join(bin, name), 0o755);
  }
  // The image's /etc/influxdb/influxdb.conf, its paths in the volume mapped.
  writeFileSync(
    join(root, 'etc/influxdb/influxdb.conf'),
    `[meta]\n  dir = "${toHost('/var/lib/influxdb/meta')}"\n\n[data]\n  dir = "${toHost('/var/lib/influxdb/data')}"\n  engine = "tsm1"\n  wal-dir = "${toHost('/var/lib/influxdb/wal')}"\n`,
  );
  const env: Record<string, string> = { PATH: `${bin}:${BASE_PATH}`, HOME: join(root, 'var/lib/influxdb-home'), HOSTNAME: service.name };
  for (const [key, value] of Object.entries(service.environment)) env[key] = toHost(value);
  mkdirSync(env['HOME']!, { recursive: true });
  const command = service.command ?? ['influxd'];
  const entrypoint = service.entrypoint ?? ['/entrypoint.sh'];
  if (entrypoint.join(' ') !== '/entrypoint.sh') throw new UnsupportedImage(`${service.name}: an entrypoint other than the influxdb image's own (${entrypoint.join(' ')})`);
  return {
    setup: [],
    main: { argv: ['bash', join(HERE, 'images/influxdb-entrypoint.sh'), ...command], env: { ...env, TF_ROOT: root, TF_META_DIR: toHost('/var/lib/influxdb/meta') }, cwd: '/' },
    mapCommand: (cmd) => cmd,
  };
}

/** How this machine runs a container of the service's image. */
export function emulationFor(context: ContainerContext): Emulation {
  const { service } = context;
  if (service.build !== undefined) return projectImage(context);
  const image = service.image ?? '';
  if (image.startsWith('apache/kafka:')) return kafkaImage(context);
  if (/^influxdb:1\.11(\.|$)/.test(image)) return influxdbImage(context);
  throw new UnsupportedImage(`${service.name}: no counterpart of the image ${image} runs on this machine`);
}
