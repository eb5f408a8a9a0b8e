import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import type { ObjectLiteral, SelectQueryBuilder } from 'typeorm';

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
 * Newest first, by id: ids begin with their creation time (see newId), so the
 * cursor is the id itself and a page costs one index range scan.
 */
export async function page<E extends ObjectLiteral, V>(
  query: SelectQueryBuilder<E>,
  { limit, startingAfter }: ListQuery,
  toView: (entity: E) => V,
): Promise<List<V>> {
  const alias = query.alias;
  query.orderBy(`${alias}.id`, 'DESC').limit(limit + 1);
  if (startingAfter) query.andWhere(`${alias}.id < :startingAfter`, { startingAfter });
  const rows = await query.getMany();
  return { object: 'list', data: rows.slice(0, limit).map(toView), hasMore: rows.length > limit };
}
