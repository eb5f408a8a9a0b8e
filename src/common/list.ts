import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';

/** `limit` and `startingAfter` (contract §1); subclasses add the id format of their resource. */
export class ListQuery {
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  limit: number = 20;

  startingAfter?: string;
}

export interface List<T> {
  object: 'list';
  data: T[];
  hasMore: boolean;
}

/**
 * The end of a list's query, after its WHERE conditions: newest first, by id.
 * Ids begin with their creation time (see newId), so the cursor is the id itself
 * and a page costs one index range scan. Parameters $n and $n+1 are the cursor and
 * the count of rows to read, `limit + 1` (pageParams): an extra row says there is more.
 */
export function pageAfter(n: number): string {
  return `AND ($${n}::text IS NULL OR id < $${n}) ORDER BY id DESC LIMIT $${n + 1}`;
}

/** The cursor and row count of a page: the last parameters of a query ending in pageAfter(). */
export function pageParams({ limit, startingAfter }: ListQuery): [string | null, number] {
  return [startingAfter ?? null, limit + 1];
}

/** The page of `rows` (read with pageParams) as the contract lists it. */
export function toList<R, V>(rows: R[], { limit }: ListQuery, toView: (row: R) => V): List<V> {
  return { object: 'list', data: rows.slice(0, limit).map(toView), hasMore: rows.length > limit };
}
