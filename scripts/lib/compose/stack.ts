/**
 * `docker compose up` without a Docker engine: the containers of a compose project started in
 * dependency order on a network of their own (see network.ts), each as its image would run it
 * (see images.ts) with the environment compose gives it, `depends_on` conditions waited for with
 * the health checks compose or the image define, and published ports forwarded. What cannot run
 * here (an image with no counterpart) is reported, not silently left out.
 *
 * Unlike compose, a container that exits unasked is not restarted: a cold `up` has to converge
 * without restarts, so an exit is a failure the caller sees.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { emulationFor, UnsupportedImage, type Emulation, type ProcessSpec, type Toolchain } from './images.ts';
import { createNetwork, type Network } from './network.ts';
import { activeServices, startOrder, type ComposeProject, type Healthcheck, type ServiceConfig } from './project.ts';

export class StackError extends Error {
  override readonly name = 'StackError';
}

export interface StackOptions {
  readonly project: ComposeProject;
  readonly profiles?: readonly string[];
  /** Only these services (and what they depend on); all active ones by default. */
  readonly services?: readonly string[];
  /** Container roots, volumes and logs go here; volumes outlive `down`, as compose's do. */
  readonly workDir: string;
  readonly repo: string;
  readonly toolchain: Toolchain;
  /** Short and unique among runs on this machine (network and interface names). */
  readonly id: string;
  /** How long one dependency may take to become healthy or complete. */
  readonly waitTimeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface Container {
  readonly service: ServiceConfig;
  readonly emulation: Emulation;
  readonly child: ChildProcess;
  /** Everything it wrote, the last megabytes of it. */
  output(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exitCode(): number | null | undefined;
  /** Runs its health check once: true when it passes. */
  healthy(): Promise<boolean>;
  /** Stopped by `down` or `stop`, not on its own. */
  stoppedOnPurpose: boolean;
}

const KEEP_OUTPUT = 4_000_000;

function collect(child: ChildProcess, file: WriteStream): () => string {
  let output = '';
  const keep = (chunk: Buffer) => {
    file.write(chunk);
    output += chunk.toString();
    if (output.length > KEEP_OUTPUT) output = output.slice(-KEEP_OUTPUT / 2);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => output;
}

export class Stack {
  readonly containers = new Map<string, Container>();
  /** Services of the project that this machine cannot run, with the reason. */
  readonly notRun = new Map<string, string>();
  private network: Network | undefined;
  private readonly options: StackOptions;
  private readonly say: (line: string) => void;

  constructor(options: StackOptions) {
    this.options = options;
    this.say = options.log ?? (() => undefined);
  }

  private volumeDir = (volume: string): string => {
    const dir = join(this.options.workDir, 'volumes', `${this.options.project.name}_${volume}`);
    mkdirSync(dir, { recursive: true });
    return dir;
  };

  /** The services to start: the wanted ones and everything they depend on. */
  private selected(): ServiceConfig[] {
    const active = activeServices(this.options.project, this.options.profiles);
    if (this.options.services === undefined) return active;
    const byName = new Map(active.map((s) => [s.name, s]));
    const wanted = new Set<string>();
    const add = (name: string) => {
      if (wanted.has(name)) return;
      const service = byName.get(name);
      if (service === undefined) throw new StackError(`no service ${name} in the project (or its profile is not active)`);
      wanted.add(name);
      for (const dependency of Object.keys(service.dependsOn)) add(dependency);
    };
    for (const name of this.options.services) add(name);
    return active.filter((s) => wanted.has(s.name));
  }

  /** Starts the services like `docker compose up -d`, returning once all are started and their dependents' conditions held. */
  async up(): Promise<void> {
    const services = startOrder(this.selected());
    const runnable: ServiceConfig[] = [];
    const emulations = new Map<string, Emulation>();
    for (const service of services) {
      try {
        const root = join(this.options.workDir, 'containers', service.name);
        mkdirSync(root, { recursive: true });
        emulations.set(service.name, emulationFor({ service, root, volumeDir: this.volumeDir, repo: this.options.repo, toolchain: this.options.toolchain }));
        runnable.push(service);
      } catch (error) {
        if (!(error instanceof UnsupportedImage)) throw error;
        this.notRun.set(service.name, error.message);
      }
    }
    for (const service of runnable) {
      for (const dependency of Object.keys(service.dependsOn)) {
        if (this.notRun.has(dependency)) throw new StackError(`${service.name} depends on ${dependency}, which cannot run here: ${this.notRun.get(dependency)}`);
      }
    }
    this.network ??= await createNetwork(this.options.id, [...this.options.project.services.keys()]);
    for (const service of runnable) {
      for (const [dependency, condition] of Object.entries(service.dependsOn)) await this.waitFor(dependency, condition, service.name);
      await this.start(service, emulations.get(service.name)!);
    }
  }

  private spawn(service: ServiceConfig, spec: ProcessSpec, logName: string): { child: ChildProcess; output: () => string; file: WriteStream } {
    const logs = join(this.options.workDir, 'logs');
    mkdirSync(logs, { recursive: true });
    const file = createWriteStream(join(logs, `${logName}.log`), { flags: 'a' });
    const child = this.network!.spawnIn(service.name, spec.argv, { env: { ...spec.env }, cwd: spec.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    return { child, output: collect(child, file), file };
  }

  private async start(service: ServiceConfig, emulation: Emulation): Promise<void> {
    for (const [i, step] of emulation.setup.entries()) {
      const { child, output, file } = this.spawn(service, step, `${service.name}.setup-${i}`);
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      file.end();
      if (code !== 0) throw new StackError(`${service.name}: the image's set-up exited with ${code}:\n${output().slice(-4_000)}`);
    }
    emulation.check?.();
    const { child, output, file } = this.spawn(service, emulation.main, service.name);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => {
        file.end();
        resolve({ code, signal });
      }),
    );
    const healthcheck = this.healthcheckOf(service, emulation);
    const container: Container = {
      service,
      emulation,
      child,
      output,
      exited,
      exitCode: () => (child.exitCode === null && child.signalCode === null ? undefined : child.exitCode),
      healthy: () => this.runHealthcheck(service, emulation, healthcheck),
      stoppedOnPurpose: false,
    };
    this.containers.set(service.name, container);
    void exited.then(({ code, signal }) => {
      if (!container.stoppedOnPurpose) this.say(`${service.name} exited with ${code ?? signal}`);
    });
    this.say(`${service.name} started (pid ${child.pid})`);
    for (const port of service.ports) await this.network!.publish(service.name, port);
  }

  /** The health check in force: compose's, else the image's; undefined when there is none or it is disabled. */
  healthcheckOf(service: ServiceConfig, emulation: Emulation): Healthcheck | undefined {
    const own = service.healthcheck;
    if (own?.disable === true) return undefined;
    const image = emulation.imageHealthcheck;
    if (own?.test === undefined) return image === undefined || image.disable ? undefined : { ...image, ...own, disable: false, ...(image.test === undefined ? {} : { test: image.test }) };
    return own;
  }

  private async runHealthcheck(service: ServiceConfig, emulation: Emulation, check: Healthcheck | undefined): Promise<boolean> {
    if (check?.test === undefined) return false;
    const [kind, ...rest] = check.test;
    const argv = kind === 'CMD-SHELL' ? ['/bin/sh', '-c', emulation.mapCommand(rest.join(' '))] : rest.map((arg) => emulation.mapCommand(arg));
    if (argv[0] === 'node') argv[0] = this.options.toolchain.node;
    const { child } = this.spawn(service, { ...emulation.main, argv }, `${service.name}.health`);
    const timeout = setTimeout(() => child.kill('SIGKILL'), check.timeoutMs ?? 30_000);
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    clearTimeout(timeout);
    return code === 0;
  }

  /** Waits until `name` meets `condition`, as compose does before starting `dependent`. */
  private async waitFor(name: string, condition: string, dependent: string): Promise<void> {
    const container = this.containers.get(name);
    if (container === undefined) throw new StackError(`${dependent} depends on ${name}, which was not started`);
    const deadline = Date.now() + (this.options.waitTimeoutMs ?? 300_000);
    if (condition === 'service_completed_successfully') {
      const { code, signal } = await Promise.race([
        container.exited,
        sleep(Math.max(0, deadline - Date.now())).then(() => {
          throw new StackError(`${dependent} waited for ${name} to complete, in vain:\n${container.output().slice(-4_000)}`);
        }),
      ]);
      if (code !== 0) throw new StackError(`service "${name}" didn't complete successfully: exit ${code ?? signal} (${dependent} depends on it):\n${container.output().slice(-4_000)}`);
      return;
    }
    if (condition === 'service_healthy') {
      const check = this.healthcheckOf(container.service, container.emulation);
      if (check === undefined) throw new StackError(`${dependent} waits for ${name} to be healthy, but ${name} has no health check`);
      // Docker runs the first check an interval after the start, then one per interval.
      const interval = check.intervalMs ?? 30_000;
      const started = Date.now();
      let failures = 0;
      for (;;) {
        await sleep(interval);
        if (container.exitCode() !== undefined) throw new StackError(`${name} exited with ${container.exitCode()} before it was healthy (${dependent} waits for it):\n${container.output().slice(-4_000)}`);
        if (await container.healthy()) return;
        if (Date.now() - started > (check.startPeriodMs ?? 0)) failures++;
        if (failures >= (check.retries ?? 3) || Date.now() > deadline) {
          throw new StackError(`dependency failed to start: container ${name} is unhealthy (${dependent} waits for it):\n${container.output().slice(-4_000)}`);
        }
      }
    }
    if (container.exitCode() !== undefined && container.exitCode() !== 0) throw new StackError(`${name} exited with ${container.exitCode()} (${dependent} depends on it)`);
  }

  /** Waits until a started container's health check passes (as a `service_healthy` dependent would). */
  async waitHealthy(name: string): Promise<void> {
    await this.waitFor(name, 'service_healthy', 'the caller');
  }

  /** SIGTERM to a container (then SIGKILL after `graceMs`), as `docker compose stop` does. */
  async stop(name: string, graceMs = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const container = this.containers.get(name);
    if (container === undefined) throw new StackError(`no container ${name}`);
    container.stoppedOnPurpose = true;
    if (container.exitCode() === undefined) {
      signalGroup(container.child, 'SIGTERM');
      const killer = setTimeout(() => signalGroup(container.child, 'SIGKILL'), graceMs);
      const result = await container.exited;
      clearTimeout(killer);
      return result;
    }
    return container.exited;
  }

  /** Stops every container (dependents first) and removes the network; volumes stay. */
  async down(): Promise<void> {
    const names = [...this.containers.keys()].reverse();
    for (const name of names) await this.stop(name).catch(() => undefined);
    this.containers.clear();
    await this.network?.remove();
    this.network = undefined;
  }

  /** Containers that exited without being asked to: a stack that converged has none. */
  unexpectedExits(): { name: string; code: number | null | undefined; output: string }[] {
    return [...this.containers.values()]
      .filter((c) => !c.stoppedOnPurpose && c.exitCode() !== undefined && c.service.restart !== 'no')
      .map((c) => ({ name: c.service.name, code: c.exitCode(), output: c.output().slice(-4_000) }));
  }
}

/** A container's processes: `ip netns exec` runs the image's process as its child, in a group of its own. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}
