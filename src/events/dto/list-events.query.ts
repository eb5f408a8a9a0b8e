import { IsOptional, Matches } from 'class-validator';
import { ListQuery } from '../../common/list.js';

export class ListEventsQuery extends ListQuery {
  @IsOptional()
  @Matches(/^evt_[0-9A-Z]{26}$/, { message: 'startingAfter must be an event id' })
  declare startingAfter?: string;
}
