/**
 * The venue simulation: every allocation of an execution is filled at the execution's price.
 * Deltas: BUY +shares / −cash, SELL −shares / +cash, in exact micro-units.
 */
import { fromMicros, toMicros, valueOf, type Allocation, type Execution, type Fill } from '@tradeflow/shared';

/** The original's executions carry no allocations: then the execution is one allocation of itself. */
export function allocationsOf(execution: Execution): Allocation[] {
  return (
    execution.allocations ?? [
      {
        taxpayer_id: execution.taxpayer_id,
        portfolio_order_id: execution.portfolio_order_id,
        component_order_id: execution.component_order_id,
        order_type: execution.order_type,
        requested_amount: execution.requested_amount,
        requested_shares: execution.requested_shares,
        timestamp: execution.timestamp,
      },
    ]
  );
}

export function fillsOf(execution: Execution, now: number): Fill[] {
  const executionId = execution.execution_id ?? `ex:${execution.market_order_id}`;
  const priceMicros = toMicros(execution.requested_price);
  return allocationsOf(execution).map((allocation) => {
    const sharesMicros = toMicros(allocation.requested_shares);
    const amountMicros = valueOf(sharesMicros, priceMicros);
    const buy = allocation.order_type === 'BUY';
    return {
      taxpayer_id: allocation.taxpayer_id,
      portfolio_order_id: allocation.portfolio_order_id,
      component_order_id: allocation.component_order_id,
      market_order_id: execution.market_order_id,
      execution_id: executionId,
      fill_id: `${executionId}/${allocation.component_order_id}`,
      symbol: execution.symbol,
      order_type: allocation.order_type,
      filled_amount: fromMicros(amountMicros),
      filled_shares: fromMicros(sharesMicros),
      filled_price: fromMicros(priceMicros),
      delta_shares_position: fromMicros(buy ? sharesMicros : -sharesMicros),
      delta_cash_position: fromMicros(buy ? -amountMicros : amountMicros),
      timestamp: now,
      order_timestamp: allocation.timestamp,
    };
  });
}
