/**
 * The portfolio service's HTTP side: an account's valuation, its recent fills, a Server-Sent Events
 * stream of its changes, and the web page. Each account lives in one partition, held by one member
 * of the group; a request for an account another member holds is forwarded to it (Kafka Streams'
 * interactive queries), so any instance answers for any account.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { partitionFor, type Logger, type ServiceMetrics } from '@tradeflow/shared';
import type { PortfolioStore } from './store.ts';
import { valuePosition, type Valuation } from './valuation.ts';

const PAGE = readFileSync(new URL('./page.html', import.meta.url));
const FORWARDED = 'x-tradeflow-forwarded-by';
const MAX_FILLS = 200;

export interface Ownership {
  /** This member's address. */
  readonly self: string;
  readonly partitions: number;
  /** Partitions this member holds now. */
  holds(partition: number): boolean;
  /** The address of the member holding a partition, if known. */
  ownerOf(partition: number): string | undefined;
  refresh(): Promise<void>;
  /** How many records this member is behind on a partition, per topic. */
  lag(partition: number): Record<string, number>;
}

export interface AccountAnswer extends Valuation {
  readonly last_fill_at: string;
  readonly partition: number;
  readonly served_by: string;
  /** How far behind Kafka the answer is: records of the account's partitions not applied yet. */
  readonly lag: Record<string, number>;
}

/** The change feed: the materializer says which accounts changed; their subscribers get an event. */
export class AccountEvents {
  private readonly subscribers = new Map<number, Set<ServerResponse>>();

  subscribe(taxpayerId: number, response: ServerResponse): () => void {
    let set = this.subscribers.get(taxpayerId);
    if (set === undefined) this.subscribers.set(taxpayerId, (set = new Set()));
    set.add(response);
    return () => {
      set!.delete(response);
      if (set!.size === 0) this.subscribers.delete(taxpayerId);
    };
  }

  watched(taxpayerId: number): boolean {
    return this.subscribers.has(taxpayerId);
  }

  send(taxpayerId: number, event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const response of this.subscribers.get(taxpayerId) ?? []) response.write(text);
  }

  get size(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }
}

export interface ServerOptions {
  readonly store: PortfolioStore;
  readonly ownership: Ownership;
  readonly events: AccountEvents;
  readonly metrics: ServiceMetrics;
  readonly logger: Logger;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** A taxpayer id from a path segment: a positive whole number. */
export function parseTaxpayerId(text: string): number {
  if (!/^[1-9][0-9]{0,15}$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new HttpError(400, `not a taxpayer id: ${JSON.stringify(text.slice(0, 40))} (a positive whole number is)`);
  }
  return Number(text);
}

export const partitionOfAccount = (taxpayerId: number, partitions: number): number => partitionFor({ topic: 'positions', key: String(taxpayerId), value: null }, partitions);

/** The answer for an account held here, or undefined when it has no position. */
export function answerFor(store: PortfolioStore, ownership: Ownership, taxpayerId: number): AccountAnswer | undefined {
  const position = store.position(taxpayerId);
  if (position === undefined) return undefined;
  const partition = partitionOfAccount(taxpayerId, ownership.partitions);
  return {
    ...valuePosition(position, (symbol) => store.price(symbol)),
    last_fill_at: new Date(position.timestamp * 1000).toISOString(),
    partition,
    served_by: ownership.self,
    lag: ownership.lag(partition),
  };
}

function json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body));
}

export function createPortfolioServer(options: ServerOptions): Server {
  const { store, ownership, events, metrics, logger } = options;

  /** Forwards the request to the member holding the account's partition; false when it is here. */
  const forwarded = async (request: IncomingMessage, response: ServerResponse, partition: number, stream: boolean): Promise<boolean> => {
    if (ownership.holds(partition)) return false;
    let owner = ownership.ownerOf(partition);
    if (owner === undefined || owner === ownership.self || request.headers[FORWARDED] !== undefined) {
      await ownership.refresh().catch(() => undefined);
      owner = ownership.ownerOf(partition);
    }
    if (owner === undefined || owner === ownership.self || request.headers[FORWARDED] !== undefined) {
      throw new HttpError(503, `partition ${partition} of this account is being handed to another instance; try again in a moment`);
    }
    const upstream = await fetch(`${owner}${request.url}`, { headers: { [FORWARDED]: ownership.self, accept: request.headers.accept ?? '*/*' }, signal: stream ? null : AbortSignal.timeout(10_000) }).catch((error: unknown) => {
      throw new HttpError(502, `the instance holding partition ${partition} (${owner}) did not answer: ${(error as Error).message}`);
    });
    metrics.extra['forwarded'] = (metrics.extra['forwarded'] ?? 0) + 1;
    response.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json', 'cache-control': 'no-store', 'x-tradeflow-served-by': owner });
    if (upstream.body === null) {
      response.end();
      return true;
    }
    const reader = upstream.body.getReader();
    request.on('close', () => void reader.cancel().catch(() => undefined));
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) break;
      response.write(value);
    }
    response.end();
    return true;
  };

  const route = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://portfolio');
    if (request.method !== 'GET') throw new HttpError(405, 'only GET is served');
    if (url.pathname === '/' || url.pathname === '/index.html') {
      response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE);
      return;
    }
    if (url.pathname === '/health') {
      json(response, metrics.healthy ? 200 : 503, { healthy: metrics.healthy });
      return;
    }
    if (url.pathname === '/metrics') {
      json(response, 200, metrics.snapshot());
      return;
    }
    const match = /^\/accounts\/([^/]+)(\/fills|\/events)?\/?$/.exec(url.pathname);
    if (match === null) throw new HttpError(404, `no such page: ${url.pathname} (there are /accounts/{taxpayer_id}, /accounts/{taxpayer_id}/fills, /accounts/{taxpayer_id}/events and /)`);
    const taxpayerId = parseTaxpayerId(match[1]!);
    const partition = partitionOfAccount(taxpayerId, ownership.partitions);
    const kind = match[2];
    if (await forwarded(request, response, partition, kind === '/events')) return;
    if (kind === '/fills') {
      const limitText = url.searchParams.get('limit') ?? '20';
      const limit = Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_FILLS) throw new HttpError(400, `limit must be a whole number from 1 to ${MAX_FILLS}, not ${JSON.stringify(limitText)}`);
      if (store.position(taxpayerId) === undefined) throw new HttpError(404, `no account ${taxpayerId} (it has had no fill)`);
      json(response, 200, { taxpayer_id: taxpayerId, fills: store.recent(taxpayerId, limit), served_by: ownership.self, lag: ownership.lag(partition) });
      return;
    }
    if (kind === '/events') {
      response.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-tradeflow-served-by': ownership.self });
      const unsubscribe = events.subscribe(taxpayerId, response);
      const current = answerFor(store, ownership, taxpayerId);
      response.write(`event: account\ndata: ${JSON.stringify(current ?? { taxpayer_id: taxpayerId, fills: 0, waiting: 'no fill yet' })}\n\n`);
      const keepAlive = setInterval(() => response.write(': keep-alive\n\n'), 15_000);
      request.on('close', () => {
        clearInterval(keepAlive);
        unsubscribe();
      });
      return;
    }
    const answer = answerFor(store, ownership, taxpayerId);
    if (answer === undefined) throw new HttpError(404, `no account ${taxpayerId} (it has had no fill)`);
    json(response, 200, answer);
  };

  return createServer((request, response) => {
    route(request, response).catch((error: unknown) => {
      if (error instanceof HttpError) {
        json(response, error.status, { error: error.message }, error.status === 503 ? { 'retry-after': '1' } : {});
        return;
      }
      logger.error({ err: error, url: request.url }, 'request failed');
      if (!response.headersSent) json(response, 500, { error: 'internal error (see the service log)' });
      else response.end();
    });
  });
}
