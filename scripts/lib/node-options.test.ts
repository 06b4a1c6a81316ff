import { describe, expect, it } from 'vitest';
import { nodeOptionsFor, nodeOptionsVariable } from './node-options.ts';

describe('nodeOptionsFor', () => {
  it('gives a service its default heap bounds, and none to a service without', () => {
    expect(nodeOptionsFor('order-matcher', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('fill-publisher', {})).toBe('--max-old-space-size=128 --max-semi-space-size=8');
    expect(nodeOptionsFor('tick-deserializer', {})).toBeUndefined();
  });

  it('lets <SERVICE>_NODE_OPTIONS replace the default (empty: none) and NODE_OPTIONS come last', () => {
    expect(nodeOptionsVariable('fill-publisher')).toBe('FILL_PUBLISHER_NODE_OPTIONS');
    expect(nodeOptionsFor('fill-publisher', { FILL_PUBLISHER_NODE_OPTIONS: '--max-old-space-size=512' })).toBe('--max-old-space-size=512');
    expect(nodeOptionsFor('fill-publisher', { FILL_PUBLISHER_NODE_OPTIONS: '' })).toBeUndefined();
    expect(nodeOptionsFor('order-matcher', { NODE_OPTIONS: '--max-old-space-size=256' })).toBe('--max-old-space-size=128 --max-semi-space-size=8 --max-old-space-size=256');
    expect(nodeOptionsFor('portfolio', { NODE_OPTIONS: '--enable-source-maps' })).toBe('--enable-source-maps');
  });
});
