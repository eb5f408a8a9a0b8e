import { ValidationPipe, type ValidationError } from '@nestjs/common';
import { ProblemError } from '../problems/problem.js';

export interface FieldError {
  field: string;
  message: string;
}

/** class-validator's nested errors as a flat list of `{ field, message }`, with dotted paths. */
export function flattenValidationErrors(errors: ValidationError[], parent = ''): FieldError[] {
  return errors.flatMap((error) => {
    const field = parent ? `${parent}.${error.property}` : error.property;
    const own = Object.values(error.constraints ?? {}).map((message) => ({ field, message }));
    return [...own, ...flattenValidationErrors(error.children ?? [], field)];
  });
}

/** A problem lists this many of a request's errors, and counts the rest: the answer stays short. */
export const MAX_LISTED_ERRORS = 10;

/**
 * Bodies and queries are validated against their DTO classes; unknown fields are
 * errors (a typo such as `ammount` must not be silently ignored on a payment).
 * No implicit conversion: `"amount": "100"` is refused, not coerced.
 */
export function createValidationPipe(): ValidationPipe {
  return new ValidationPipe({
    whitelist: true,
    forbidNonWhitelisted: true,
    forbidUnknownValues: true,
    transform: true,
    validationError: { target: false, value: false },
    exceptionFactory: (errors) => {
      const list = flattenValidationErrors(errors);
      const detail =
        list.length === 1
          ? `${list[0].field}: ${list[0].message}`
          : list.length <= MAX_LISTED_ERRORS
            ? `${list.length} fields are invalid.`
            : `${list.length} fields are invalid; the first ${MAX_LISTED_ERRORS} are listed.`;
      return new ProblemError('validation-failed', detail, {
        errors: list.slice(0, MAX_LISTED_ERRORS),
        ...(list.length > MAX_LISTED_ERRORS ? { errorCount: list.length } : {}),
      });
    },
  });
}
