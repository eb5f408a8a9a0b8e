/** Contract §1: amounts are integers of minor units in [1, 1e12]. */
export const MAX_AMOUNT = 1_000_000_000_000;
/** A balance never exceeds this, so it is exact as a JavaScript number (and in JSON). */
export const MAX_BALANCE = Number.MAX_SAFE_INTEGER;
export const CURRENCY_PATTERN = /^[A-Z]{3}$/;
