import { IsOptional, IsString, Length, Matches } from 'class-validator';
import { ListQuery } from '../../common/list.js';

export class ListChargesQuery extends ListQuery {
  /** Only the charges of this account. */
  @IsOptional()
  @IsString()
  @Length(1, 100)
  accountId?: string;

  @IsOptional()
  @Matches(/^ch_[0-9A-Z]{26}$/, { message: 'startingAfter must be a charge id' })
  declare startingAfter?: string;
}
