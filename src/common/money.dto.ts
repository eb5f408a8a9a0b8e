import { IsInt, IsOptional, IsString, Matches, Max, MaxLength, Min } from 'class-validator';
import { CURRENCY_PATTERN, MAX_AMOUNT } from './money.js';

/** The fields every money movement shares: an amount, its currency and a note. */
export class MoneyMovementDto {
  /** Integer minor units (cents), never a float. */
  @IsInt({ message: 'amount must be an integer number of minor units (e.g. cents)' })
  @Min(1)
  @Max(MAX_AMOUNT)
  amount: number;

  @IsString()
  @Matches(CURRENCY_PATTERN, {
    message: 'currency must be an ISO 4217 code in upper case, e.g. USD',
  })
  currency: string;

  @IsOptional()
  @IsString()
  @MaxLength(500)
  description?: string;
}
