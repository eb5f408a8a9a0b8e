import { IsOptional, Matches } from 'class-validator';
import { ListQuery } from '../common/list.js';

export class ListLedgerQuery extends ListQuery {
  @IsOptional()
  @Matches(/^le_[0-9A-Z]{26}$/, { message: 'startingAfter must be a ledger entry id' })
  declare startingAfter?: string;
}
