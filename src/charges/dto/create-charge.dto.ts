import { IsOptional, IsString, Length } from 'class-validator';
import { MoneyMovementDto } from '../../common/money.dto.js';
import { IsMetadata } from '../../common/metadata.js';

export class CreateChargeDto extends MoneyMovementDto {
  @IsString()
  @Length(1, 100)
  accountId: string;

  @IsOptional()
  @IsMetadata()
  metadata?: Record<string, string>;
}
