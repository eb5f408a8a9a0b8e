import { Transform } from 'class-transformer';
import { IsBoolean, IsOptional, Matches } from 'class-validator';
import { ListQuery } from '../../common/list.js';

export class ListAccountsQuery extends ListQuery {
  @IsOptional()
  @Matches(/^acct_[0-9A-Z]{26}$/, { message: 'startingAfter must be an account id' })
  declare startingAfter?: string;

  /** `true`: closed accounts are listed too; by default only open ones are. */
  @IsOptional()
  @Transform(({ value }: { value: unknown }) =>
    value === 'true' ? true : value === 'false' ? false : value,
  )
  @IsBoolean({ message: 'includeClosed must be true or false' })
  includeClosed: boolean = false;
}
