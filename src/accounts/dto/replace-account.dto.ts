import { IsOptional, IsString, Length } from 'class-validator';
import { IsMetadata } from '../../common/metadata.js';

/**
 * PUT /accounts/{id}: what a merchant may set on an account, all of it, every
 * time (a replacement: metadata left out is empty). Not the balance, which only
 * money movements change, nor the currency: sending them is a 400, as any
 * unknown field is.
 */
export class ReplaceAccountDto {
  @IsString()
  @Length(1, 100)
  name: string;

  @IsOptional()
  @IsMetadata()
  metadata?: Record<string, string>;
}
