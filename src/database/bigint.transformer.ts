import type { ValueTransformer } from 'typeorm';

/**
 * pg returns `bigint` columns as strings, because a JavaScript number cannot hold
 * every 64-bit integer. Our amounts and balances are capped at
 * Number.MAX_SAFE_INTEGER by CHECK constraints, so converting to number is exact.
 */
export const bigint: ValueTransformer = {
  to: (value: number | null | undefined) => value,
  from: (value: string | null) => (value === null ? null : Number(value)),
};
