import { IsOptional, Matches } from 'class-validator';
import { ListQuery } from '../../common/list.js';

export class ListAccountsQuery extends ListQuery {
  @IsOptional()
  @Matches(/^acct_[0-9A-Z]{26}$/, { message: 'startingAfter must be an account id' })
  declare startingAfter?: string;
}
