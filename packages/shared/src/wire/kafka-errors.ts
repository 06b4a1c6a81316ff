/**
 * Kafka's error codes as the lean producer meets them, and the error it throws for one: its `type`
 * is the code's name, as the runner's error kinds (runner/retry.ts) and kafkajs's errors name them.
 */
const NAMES = new Map<number, string>([
  [-1, 'UNKNOWN_SERVER_ERROR'],
  [1, 'OFFSET_OUT_OF_RANGE'],
  [2, 'CORRUPT_MESSAGE'],
  [3, 'UNKNOWN_TOPIC_OR_PARTITION'],
  [4, 'INVALID_FETCH_SIZE'],
  [5, 'LEADER_NOT_AVAILABLE'],
  [6, 'NOT_LEADER_OR_FOLLOWER'],
  [7, 'REQUEST_TIMED_OUT'],
  [8, 'BROKER_NOT_AVAILABLE'],
  [10, 'MESSAGE_TOO_LARGE'],
  [13, 'NETWORK_EXCEPTION'],
  [14, 'COORDINATOR_LOAD_IN_PROGRESS'],
  [15, 'COORDINATOR_NOT_AVAILABLE'],
  [16, 'NOT_COORDINATOR'],
  [17, 'INVALID_TOPIC_EXCEPTION'],
  [18, 'RECORD_LIST_TOO_LARGE'],
  [19, 'NOT_ENOUGH_REPLICAS'],
  [20, 'NOT_ENOUGH_REPLICAS_AFTER_APPEND'],
  [21, 'INVALID_REQUIRED_ACKS'],
  [22, 'ILLEGAL_GENERATION'],
  [25, 'UNKNOWN_MEMBER_ID'],
  [27, 'REBALANCE_IN_PROGRESS'],
  [28, 'INVALID_COMMIT_OFFSET_SIZE'],
  [29, 'TOPIC_AUTHORIZATION_FAILED'],
  [30, 'GROUP_AUTHORIZATION_FAILED'],
  [31, 'CLUSTER_AUTHORIZATION_FAILED'],
  [35, 'UNSUPPORTED_VERSION'],
  [42, 'INVALID_REQUEST'],
  [45, 'OUT_OF_ORDER_SEQUENCE_NUMBER'],
  [46, 'DUPLICATE_SEQUENCE_NUMBER'],
  [47, 'INVALID_PRODUCER_EPOCH'],
  [48, 'INVALID_TXN_STATE'],
  [49, 'INVALID_PRODUCER_ID_MAPPING'],
  [50, 'INVALID_TRANSACTION_TIMEOUT'],
  [51, 'CONCURRENT_TRANSACTIONS'],
  [52, 'TRANSACTION_COORDINATOR_FENCED'],
  [53, 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED'],
  [55, 'OPERATION_NOT_ATTEMPTED'],
  [56, 'KAFKA_STORAGE_ERROR'],
  [59, 'UNKNOWN_PRODUCER_ID'],
  [74, 'FENCED_LEADER_EPOCH'],
  [75, 'UNKNOWN_LEADER_EPOCH'],
  [82, 'FENCED_INSTANCE_ID'],
  [87, 'INVALID_RECORD'],
  [88, 'UNSTABLE_OFFSET_COMMIT'],
  [90, 'PRODUCER_FENCED'],
]);

/** Errors that a coordinator lookup and a retry can mend. */
export const COORDINATOR_MOVED = new Set(['NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE']);
/** Errors that waiting a little and retrying the same request can mend. */
export const TRY_AGAIN = new Set(['COORDINATOR_LOAD_IN_PROGRESS', 'CONCURRENT_TRANSACTIONS', 'REQUEST_TIMED_OUT', 'UNKNOWN_TOPIC_OR_PARTITION', 'NOT_ENOUGH_REPLICAS', 'LEADER_NOT_AVAILABLE']);

export const errorName = (code: number): string => NAMES.get(code) ?? `KAFKA_ERROR_${code}`;

/** An error a broker answered with; `type` is its name (e.g. PRODUCER_FENCED). */
export class KafkaProtocolError extends Error {
  override readonly name = 'KafkaProtocolError';
  readonly type: string;
  readonly code: number;

  constructor(code: number, what: string) {
    super(`${what}: ${errorName(code)}`);
    this.code = code;
    this.type = errorName(code);
  }
}
