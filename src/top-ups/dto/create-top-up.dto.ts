import { IsString, Matches } from 'class-validator';
import { MoneyMovementDto } from '../../common/money.dto.js';

export class CreateTopUpDto extends MoneyMovementDto {
  /** A card token from the processor (test cards: tok_visa, tok_declined, ...). */
  @IsString()
  @Matches(/^tok_\w{1,40}$/, { message: 'card must be a card token such as tok_visa' })
  card: string;
}
