/** Stable, greppable error codes (Fastify's `FST_ERR_*` habit). The CLI prints `message` only, never a stack. */
export type ErrorCode =
  | 'GH_ERR_CONFIG'
  | 'GH_ERR_USERS'
  | 'GH_ERR_TLS'
  | 'GH_ERR_LISTEN'
  | 'GH_ERR_USAGE'
  | 'GH_ERR_QUEUE'
  | 'GH_ERR_LOCKED'
  | 'GH_ERR_ISOLATION';

export class GatehouseError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
    this.name = 'GatehouseError';
  }
}
