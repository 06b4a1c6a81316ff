import { decodeMessage, Fill, Execution, ComponentOrder } from './src/index.ts';
import { performance } from 'node:perf_hooks';
const fill = { taxpayer_id: 123456789, portfolio_order_id: '8f14e45f-ceea-467f-a0e6-5a9e1c3c1b2d', component_order_id: '8f14e45f-ceea-467f-a0e6-5a9e1c3c1b2d:VTI', market_order_id: 'blk:VTI@1700000000', execution_id: 'blk:VTI@1700000000', fill_id: 'blk:VTI@1700000000:8f14e45f-ceea-467f-a0e6-5a9e1c3c1b2d:VTI', symbol: 'VTI', order_type: 'BUY', filled_amount: 1234.56, filled_shares: 12.345678, filled_price: 100.01, delta_shares_position: 12.345678, delta_cash_position: -1234.56, timestamp: 1763800000.123456, order_timestamp: 1763800000.1 };
const buf = Buffer.from(JSON.stringify(fill));
const N = 200000;
for (const [name, f] of [['JSON.parse', () => JSON.parse(buf.toString('utf8'))], ['decodeMessage(Fill)', () => decodeMessage(Fill, buf)], ['ok?', () => { if (!decodeMessage(Fill, buf).ok) throw new Error('bad'); }], ['Fill.safeParse(obj)', () => Fill.safeParse(JSON.parse(buf.toString()))]] as const) {
  for (let r = 0; r < 3; r++) {
    const t = performance.now();
    for (let i = 0; i < N; i++) f();
    const us = ((performance.now() - t) * 1000) / N;
    if (r === 2) console.log(name, us.toFixed(2), 'µs');
  }
}
