import { IsOptional, IsString, Length, Matches } from 'class-validator';
import { IsMetadata } from '../../common/metadata.js';
import { CURRENCY_PATTERN } from '../../common/money.js';

export class CreateAccountDto {
  @IsString()
  @Length(1, 100)
  name: string;

  /** ISO 4217 alphabetic code, upper case. */
  @IsString()
  @Matches(CURRENCY_PATTERN, {
    message: 'currency must be an ISO 4217 code in upper case, e.g. USD',
  })
  currency: string;

  @IsOptional()
  @IsMetadata()
  metadata?: Record<string, string>;
}
