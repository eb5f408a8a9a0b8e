import { IsOptional, Matches } from 'class-validator';
import { ListQuery } from '../../common/list.js';

export class ListWebhookEndpointsQuery extends ListQuery {
  @IsOptional()
  @Matches(/^we_[0-9A-Z]{26}$/, { message: 'startingAfter must be a webhook endpoint id' })
  declare startingAfter?: string;
}
