import { registerDecorator, type ValidationOptions } from 'class-validator';

export const METADATA_LIMITS = { pairs: 20, keyLength: 40, valueLength: 500 } as const;

/** Why `value` is not valid charge metadata, or undefined when it is. */
export function metadataProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return 'metadata must be an object of string keys to string values';
  }
  const entries = Object.entries(value);
  if (entries.length > METADATA_LIMITS.pairs) {
    return `metadata may hold at most ${METADATA_LIMITS.pairs} pairs`;
  }
  for (const [key, item] of entries) {
    if (key.length < 1 || key.length > METADATA_LIMITS.keyLength) {
      return `metadata keys must be 1..${METADATA_LIMITS.keyLength} characters`;
    }
    if (typeof item !== 'string') return `metadata.${key} must be a string`;
    if (item.length > METADATA_LIMITS.valueLength) {
      return `metadata.${key} must be at most ${METADATA_LIMITS.valueLength} characters`;
    }
  }
  return undefined;
}

/** At most 20 string→string pairs; keys ≤ 40 characters, values ≤ 500 (contract §3): on charges and accounts. */
export function IsMetadata(options?: ValidationOptions): PropertyDecorator {
  return (target, propertyName) =>
    registerDecorator({
      name: 'isMetadata',
      target: target.constructor,
      propertyName: propertyName as string,
      options,
      validator: {
        validate: (value: unknown) => metadataProblem(value) === undefined,
        defaultMessage: (args) => metadataProblem(args?.value) ?? 'metadata is invalid',
      },
    });
}
