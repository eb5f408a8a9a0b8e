import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { MAX_AMOUNT } from '../../common/money.js';

export class CreateRefundDto {
  /** Minor units; default: what is left to refund on the charge. */
  @IsOptional()
  @IsInt({ message: 'amount must be an integer number of minor units (e.g. cents)' })
  @Min(1)
  @Max(MAX_AMOUNT)
  amount?: number;
}
